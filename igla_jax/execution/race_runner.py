"""Runs a race end to end, live or replayed: the run directory, resume, the victory verdict, progress figures.

Run directory (--out): race.json (run id, seed, preset), ledger.jsonl (the source of truth),
race.db (SQLite leaderboard, rebuilt from the ledger on resume), ckpt/<trial>/step_<n>.msgpack
(race.json and resume: `igla_jax.execution.run_dir`; presets: `igla_jax.execution.presets`). `run_replay` runs
the same race answered from a recorded curve table (igla_jax.execution.replay), into the same files (no
checkpoints) or, without --out, into memory.
"""
from __future__ import annotations

import dataclasses
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable

from igla_jax.evidence.leaderboard import Leaderboard
from igla_jax.evidence.ledger import CANONICAL_LEDGER, Ledger, read_ledger
from igla_jax.evidence.ledger_row import CodeVersion, code_version
from igla_jax.evidence.prereg import Prereg, load_prereg
from igla_jax.evidence.victory import select_victory_rows, winning_seeds
from igla_jax.execution.backends import LedgerSink, MemorySink, drive
from igla_jax.execution.backends_live import check_executor
from igla_jax.execution.executor import Executor
from igla_jax.execution.presets import PRESETS, RaceSetupError
from igla_jax.execution.replay import ReplayBackend, ReplayTable, load_table, table_space
from igla_jax.execution.rows import RowMaker
from igla_jax.execution.run_dir import prepare_out, race_spec, rebuild_board, reconcile_canonical, recorded_budget
from igla_jax.execution.run_report import ReportError, read_rows, render, summary_record, time_split, write_summary
from igla_jax.execution.runner import BackendError, Shape
from igla_jax.search.interfaces import RandomSampler, RoundRobin
from igla_jax.search.race import Race, RaceConfig, RaceState
from igla_jax.search.race_types import RaceSummary


@dataclasses.dataclass(frozen=True)
class RaceOutcome:
    """Everything the CLI prints at the end."""
    run_id: str
    out: Path
    preset: str
    summary: RaceSummary
    state: RaceState
    board_top: tuple                 # leaderboard view rows (step >= min_victory_step)
    ranking: tuple                   # (trial_id, config, step, bpb) best first, ASHA order
    victory: Any                     # igla_jax.evidence.victory.Verdict, or None without a champion
    rows: tuple                      # this run's ledger rows at the end
    executed: int
    replayed: int
    wall_s: float
    # seconds and shapes compiled in the background while trials trained (igla_jax.execution.ahead; live, local)
    compiled_ahead: tuple[float, int] = dataclasses.field(default=(0.0, 0), kw_only=True)


def ranking(state: RaceState) -> tuple:
    """Trials best first as ASHA ranks them: highest rung reached, then lower BPB there."""
    rows = [(t.trial_id, t.config, t.results[-1].step, t.results[-1].bpb) for t in state.trials
            if t.results and t.results[-1].bpb is not None]
    return tuple(sorted(rows, key=lambda r: (-r[2], r[3], r[0])))


def run_race(*, seed: int, preset: str, out: Path, budget_s: float | None = None, max_trials: int | None = None,
             deadline_s: float | None = None, resume: bool = False,
             prereg: Prereg | None = None, sampler: Any = None, filter: Any = None, pruner: Any = None,
             allocator: Any = None, trainer: Any = None, progress: Any = None,
             canonical: bool | None = None, spec_extra: dict[str, Any] | None = None,
             executor: Any = "local", workers: int | None = None, deterministic: bool | None = None,
             ray_address: str | None = None, compile_cache: str | None = None,
             clock: Callable[[], float] = time.monotonic, report: bool = True,
             compile_ahead: bool = True) -> RaceOutcome:
    """Runs (or resumes) one race to its Finish action; see the module docstring for the files.

    budget_s: the race's size in wall seconds (the anytime race; igla_jax.search.anytime), counted from
    this call and cumulative across resumes (every row carries extra.elapsed_s); a resume without
    one takes the budget race.json records, so a resumed race gets what is left of it (the work in
    flight at a kill is redone and not charged). max_trials: a trial cap (default: the preset's
    count when there is no budget, none with one). deadline_s: a hard stop of this session (a pause:
    work in flight is cancelled, nothing is confirmed, --resume continues).

    spec_extra: what else defines the race (the CLI's accelerator flags, verdict-source hashes);
    recorded in race.json and compared on --resume. executor: "local", "population", "ray" or a
    Backend object (igla_jax.execution.executor.Executor); workers: Train actions in flight at once (the
    race's slots, part of its specification; default the preset's, 1); deterministic: feed results
    in action-id order (default: when workers == 1); compile_cache: the XLA cache Ray workers use;
    compile_ahead: compile the next trials' programs while one trains (local executor; no decision changes).
    """
    t0, c0 = time.monotonic(), clock()
    pr = prereg if prereg is not None else load_prereg()
    if preset not in PRESETS:
        raise RaceSetupError(f"--preset {preset!r}: choose one of {', '.join(PRESETS)}")
    if budget_s is None and resume:
        budget_s = recorded_budget(Path(out))
    if budget_s is not None and not budget_s > 0:
        raise RaceSetupError(f"--budget {budget_s!r}: must be a positive number of seconds")
    if max_trials is not None and max_trials < 1:
        raise RaceSetupError(f"--max-trials {max_trials!r}: must be >= 1")
    if workers is not None and workers < 1:
        raise RaceSetupError(f"--workers {workers!r}: must be >= 1")
    if isinstance(executor, str):
        try:
            check_executor(executor, ray_address=ray_address)
        except BackendError as e:
            raise RaceSetupError(str(e)) from None
    ps = PRESETS[preset]
    out = Path(out)
    sampler = sampler or RandomSampler(ps.space)
    allocator = allocator or RoundRobin()
    rc = ps.race_config(pr, seed, budget_s=budget_s, max_trials=max_trials)
    if workers is not None:
        rc = dataclasses.replace(rc, workers=workers)
    roles = {"sampler": sampler.name, "filter": getattr(filter, "name", None),
             "pruner": getattr(pruner, "name", None), "allocator": allocator.name}
    # the race's slots change its decisions; recorded only when not 1, so older race.json files still resume
    slots = {"workers": rc.workers} if rc.workers != 1 else {}
    spec = race_spec(seed=seed, preset=preset, race_config=rc, prereg=pr, roles=roles,
                     extra={**(spec_extra or {}), **slots})
    run_id = prepare_out(out, seed=seed, preset=preset, spec=spec, resume=resume)
    ledger = Ledger(out / "ledger.jsonl")
    rows = [r for r in read_ledger(ledger.path).rows if r.get("run_id") == run_id]
    board = rebuild_board(out / "race.db", rows, pr)
    use_canonical = ps.canonical if canonical is None else canonical
    canon, canon_keys = None, frozenset()
    if use_canonical:
        canon = Ledger(CANONICAL_LEDGER, canonical_ok=True)
        canon_keys = reconcile_canonical(canon, rows, run_id)
    race = Race(rc, sampler=sampler, filter=filter, pruner=pruner, allocator=allocator)
    shape = Shape(preset=preset, space=ps.space, context=ps.context, batch=ps.batch)
    ex = Executor(race, shape, out=out, run_id=run_id, version=code_version(), ledger=ledger, board=board,
                  rows=rows, trainer=trainer, filter=filter, deadline_s=deadline_s, clock=clock, t0=c0,
                  on_event=progress, canonical=canon, canonical_keys=canon_keys, backend=executor,
                  deterministic=deterministic, ray_address=ray_address, compile_cache=compile_cache,
                  compile_ahead=compile_ahead)
    try:
        state, summary = ex.run()
        top = tuple(board.top(5))
    finally:
        board.close()
    final = tuple(r for r in read_ledger(ledger.path).rows if r["run_id"] == run_id)
    victory = _victory(final, summary, pr)
    if report:   # the CLI draws it itself, with the verdicts it judges on the ledger afterwards
        write_report(out, summary, run_id=run_id, preset=preset, victory=victory, wall_s=time.monotonic() - t0,
                     workers=rc.workers, ahead=(ex.ahead_s, ex.ahead_n))
    return RaceOutcome(run_id=run_id, out=out, preset=preset, summary=summary, state=state, board_top=top,
                       ranking=ranking(state), victory=victory, rows=final,
                       executed=ex.executed, replayed=ex.replayed, wall_s=time.monotonic() - t0,
                       compiled_ahead=(ex.ahead_s, ex.ahead_n))


def write_report(out: Path, summary: RaceSummary, *, run_id: str, preset: str, victory: Any,
                 wall_s: float, final_verdicts: tuple = (), workers: int = 1,
                 ahead: tuple[float, int] | None = None) -> Path | None:
    """summary.json (every verdict) beside the ledger, then report.png and report.html; returns the picture.

    The ledger is complete before this runs, so a report that cannot be drawn costs no data: it is said
    on stderr and `python -m experiments.report OUT` draws it again."""
    try:
        timing = time_split(read_rows(Path(out))[0], summary.elapsed_s, workers, ahead)
    except ReportError:
        timing = None
    write_summary(out, summary_record(summary, run_id=run_id, preset=preset, victory=victory, wall_s=wall_s,
                                      final_verdicts=final_verdicts, timing=timing))
    try:
        return render(out)[0]
    except (ReportError, OSError, ValueError, RuntimeError) as e:
        print(f"warning: {out}: the race's report was not drawn ({e}); the ledger and summary.json are complete",
              file=sys.stderr)
        return None


@dataclasses.dataclass(frozen=True)
class ReplayOutcome(RaceOutcome):
    """A replayed race's outcome: the RaceOutcome fields plus the table and the simulated clock."""
    table: str
    table_sha256: str
    workers: int
    sim_s: float          # simulated wall time of the whole race, compile included
    compile_s: float      # compile seconds charged (once per worker and shape)


def run_replay(*, seed: int, preset: str, table: Any, out: Path | None = None, workers: int = 1,
               budget_s: float | None = None, max_trials: int | None = None,
               prereg: Prereg | None = None, sampler: Any = None, filter: Any = None, pruner: Any = None,
               allocator: Any = None, progress: Any = None, draw_seed: int | None = None,
               version: CodeVersion | None = None, spec_extra: dict[str, Any] | None = None,
               report: bool = True) -> ReplayOutcome:
    """Runs one race answered from a curve table (a path or a loaded igla_jax.execution.replay.ReplayTable).

    The race is the live one (same RaceConfig from the preset and --seed, same sampler, filter,
    pruner and allocator), except: search trials train on the table's primary seed (the race's
    search seed), `workers` simulated workers, and no confirmation (the table holds no victory-seed
    runs), so a budget (simulated seconds) takes no confirmation reserve: the race starts trials until
    it is spent and ends at its first result past it, as the peers' replays do. Default sampler: RandomSampler over the table's uniform stratum (the live random sampler
    never proposes a phi-grid config). out None keeps the rows in memory (no victory verdict, no
    leaderboard); with out, race.json, ledger.jsonl and race.db are written as a live race writes them.
    """
    t0 = time.monotonic()
    pr = prereg if prereg is not None else load_prereg()
    if preset not in PRESETS:
        raise RaceSetupError(f"--preset {preset!r}: choose one of {', '.join(PRESETS)}")
    if workers < 1:
        raise RaceSetupError(f"--workers {workers!r}: must be >= 1")
    ps = PRESETS[preset]
    tab = table if isinstance(table, ReplayTable) else load_table(table)
    base = ps.race_config(pr, seed, budget_s=budget_s, max_trials=max_trials)
    missing = [r for r in base.rungs if r not in tab.ladder]
    if (tab.preset is not None and tab.preset != preset) or missing:
        raise RaceSetupError(f"--replay {tab.name}: recorded for preset {tab.preset!r} (ladder {list(tab.ladder)}); "
                             f"--preset {preset} has rungs {list(base.rungs)}")
    rc = dataclasses.replace(base, workers=workers, confirm=False, search_seed=tab.primary_seed)
    sampler = sampler or RandomSampler(table_space(tab, strata=("uniform",), head_dim=ps.space.head_dim))
    allocator = allocator or RoundRobin()
    race = Race(rc, sampler=sampler, filter=filter, pruner=pruner, allocator=allocator)
    backend = ReplayBackend(tab, workers=workers, draw_seed=draw_seed)
    mark = {"table": tab.name, "table_sha256": tab.sha256}
    roles = {"sampler": sampler.name, "filter": getattr(filter, "name", None),
             "pruner": getattr(pruner, "name", None), "allocator": allocator.name}
    spec = race_spec(seed=seed, preset=preset, race_config=rc, prereg=pr, roles=roles,
                     extra={"replay": {**mark, "workers": workers, "draw_seed": draw_seed}, **(spec_extra or {})})
    top: tuple = ()
    victory = None
    if out is None:
        run_id = f"replay-s{seed}-{preset}"
        make = RowMaker(version if version is not None else code_version(), run_id, preset)
        d = drive(race, backend, sink=MemorySink(), make=make, mark=mark, filter=filter, on_event=progress)
        rows = d.rows
    else:
        out = Path(out)
        run_id = prepare_out(out, seed=seed, preset=preset, spec=spec, resume=False, kind="replay")
        make = RowMaker(version if version is not None else code_version(), run_id, preset)
        ledger = Ledger(out / "ledger.jsonl")
        board = Leaderboard(out / "race.db", prereg=pr)
        try:
            d = drive(race, backend, sink=LedgerSink(ledger, board), make=make, mark=mark, filter=filter,
                      on_event=progress)
            top = tuple(board.top(5))
        finally:
            board.close()
        rows = tuple(r for r in read_ledger(ledger.path).rows if r["run_id"] == run_id)
        # confirmation is off in a replay (no victory-seed runs recorded): victory is not judged at all
        victory = _victory(rows, d.summary, pr) if race.config.confirm else None
        if report:
            write_report(out, d.summary, run_id=run_id, preset=preset, victory=victory, wall_s=time.monotonic() - t0)
    return ReplayOutcome(run_id=run_id, out=out, preset=preset, summary=d.summary, state=d.state, board_top=top,
                         ranking=ranking(d.state), victory=victory, rows=rows, executed=d.answered, replayed=0,
                         wall_s=time.monotonic() - t0, table=tab.name, table_sha256=tab.sha256, workers=workers,
                         sim_s=d.sim_s, compile_s=backend.compile_total_s)


def _victory(rows: tuple, summary: RaceSummary, prereg: Prereg) -> Any:
    """winning_seeds on the champion's confirmation rows (one per victory seed; judged on test_bpb)."""
    if summary.champion_config is None:
        return None
    cid = summary.champion_config.config_id
    # rows from a dirty work tree name a commit whose code they did not run: never a victory
    return winning_seeds(select_victory_rows(rows, cid), prereg, config_id=cid, require_clean=True)


def planned_steps(cfg: RaceConfig) -> int:
    """Expected optimiser steps of a whole race (synchronous-SHA estimate, plus a confirm per victory seed + reproduce).

    A race without a trial cap (sized by its budget) is estimated at eta^len(rungs) trials."""
    n = cfg.max_trials if cfg.max_trials is not None else cfg.eta ** len(cfg.rungs)
    cfg = dataclasses.replace(cfg, max_trials=n)
    total, prev = 0, 0
    for k, r in enumerate(cfg.rungs):
        total += max(1, cfg.max_trials // cfg.eta**k) * (r - prev)
        prev = r
    return total + ((len(cfg.victory_seeds) + 1) * cfg.rungs[-1] if cfg.confirm else 0)


def best_so_far(state: RaceState) -> tuple[int, float] | None:
    """(step, bpb) of the best result at the highest rung any trial has reached."""
    r = ranking(state)
    return (r[0][2], r[0][3]) if r else None


def eta_s(state: RaceState, elapsed: float) -> float:
    """Remaining seconds estimated from the steps done so far (compiles make early estimates high)."""
    done = state.counters.steps
    if done == 0:
        return math.nan
    return max(0.0, elapsed / done * (planned_steps(state.config) - done))
