"""Runs a race end to end: presets, the run directory, resume, live progress and the final summary.

Run directory (--out): race.json (run id, seed, preset), ledger.jsonl (the source of truth),
race.db (SQLite leaderboard, rebuilt from the ledger on resume), ckpt/<trial>/step_<n>.msgpack.
`run_replay` runs the same race answered from a recorded curve table (igla_jax.replay), into the
same files (no checkpoints) or, without --out, into memory.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Callable

from igla_jax.executor import Executor, RowMaker, Shape, board_add
from igla_jax.interfaces import RandomSampler, RoundRobin
from igla_jax.ledger import CANONICAL_LEDGER, CodeVersion, Ledger, code_version, read_ledger, utc_now
from igla_jax.leaderboard import Leaderboard
from igla_jax.models.config import FAMILIES
from igla_jax.prereg import Prereg, load_prereg
from igla_jax.race import Race, RaceConfig, RaceState
from igla_jax.race_types import RaceSummary
from igla_jax.search_space import DEFAULT_SPACE, SearchSpace


class RaceSetupError(RuntimeError):
    """A user-fixable problem before the race starts (bad --out, resume mismatch, bad budget)."""


@dataclasses.dataclass(frozen=True)
class Preset:
    """Race configuration (not pre-registered, except that `full` takes its rungs from the prereg)."""
    name: str
    rungs: tuple[int, ...] | None   # None: the pre-registered rungs
    space: SearchSpace
    context: int
    batch: int
    max_trials: int | None          # None: eta ** len(rungs) (81 for the pre-registered rungs)
    workers: int = 1
    families: tuple[str, ...] = FAMILIES
    canonical: bool = False         # append confirmed rows to assertions/seed_results.jsonl

    def default_trials(self, prereg: Prereg) -> int:
        """The preset's pre-registered trial count (eta^len(rungs) unless the preset names one)."""
        rungs = tuple(self.rungs) if self.rungs is not None else tuple(prereg.rungs)
        return self.max_trials if self.max_trials is not None else prereg.eta ** len(rungs)

    def race_config(self, prereg: Prereg, seed: int, *, budget_s: float | None = None,
                    max_trials: int | None = None) -> RaceConfig:
        """The race of this preset. Its size: `max_trials` when given; else, with a budget, no trial cap
        (the anytime race); without one, the preset's trial count."""
        rungs = tuple(self.rungs) if self.rungs is not None else tuple(prereg.rungs)
        if max_trials is None and budget_s is None:
            max_trials = self.default_trials(prereg)
        return RaceConfig(rungs=rungs, eta=prereg.eta, seed=seed, max_trials=max_trials,
                          victory_seeds=tuple(prereg.seeds), reproduce_tol=prereg.reproduce_tol,
                          families=self.families, workers=self.workers, score_pool=prereg.filter_score_pool,
                          budget_s=budget_s, reserve_margin=prereg.confirm_reserve_margin)


PRESETS: dict[str, Preset] = {
    # seconds: one compiled program per family (width/depth/dropout/EMA pinned), 4 trials, rungs 4 and 12
    "smoke": Preset("smoke", (4, 12), SearchSpace(width=(16,), depth=(2,), dropout=(0.0,), ema_beta=(0.99,),
                                                  head_dim=8), context=32, batch=8, max_trials=4),
    # ~2 minutes on 2 idle CPU cores (102 s cold cache, 61 s warm): 27 trials, rungs 100/300/900, widths 32-96, depths 1-3
    "quick": Preset("quick", (100, 300, 900), SearchSpace(width=(32, 64, 96), depth=(1, 2, 3)),
                    context=64, batch=12, max_trials=27),
    # the pre-registered rungs at one tenth (100/300/900/2700, 81 trials) at the quick shape: the preset
    # of the recorded learning-curve table, so a recorded curve is exactly a live trial of this preset
    "tenth": Preset("tenth", (100, 300, 900, 2700), SearchSpace(width=(32, 64, 96), depth=(1, 2, 3)),
                    context=64, batch=12, max_trials=81),
    # the pre-registered race (an accelerator's job): rungs from assertions/preregistration.json
    "full": Preset("full", None, DEFAULT_SPACE, context=128, batch=32, max_trials=None, canonical=True),
}

_BUDGET_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smh])\s*$")


def parse_budget(text: str) -> float:
    """'90s', '15m', '2h' (or '1.5h') -> seconds; anything else raises RaceSetupError."""
    m = _BUDGET_RE.match(text or "")
    if not m or float(m.group(1)) <= 0:
        raise RaceSetupError(f"--budget {text!r}: expected a positive number with a unit s, m or h (e.g. 90s, 15m, 2h)")
    return float(m.group(1)) * {"s": 1, "m": 60, "h": 3600}[m.group(2)]


def enable_compile_cache(path: str | os.PathLike | None) -> None:
    """Persistent XLA compilation cache (a warm cache makes repeated CPU races start in seconds)."""
    if not path:
        return
    import jax
    Path(path).mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


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
    victory: Any                     # igla_jax.victory.Verdict, or None without a champion
    rows: tuple                      # this run's ledger rows at the end
    executed: int
    replayed: int
    wall_s: float


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes ('missing' when absent), for the race specification."""
    import hashlib
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except FileNotFoundError:
        return "missing"


def race_spec(*, seed: int, preset: str, race_config: RaceConfig, prereg: Prereg, roles: dict[str, str | None],
              extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything that defines a race; a resume must match it exactly (race.json's "spec").

    roles: the plugged-in role names (sampler, filter, pruner, allocator); extra: the CLI's
    accelerator flags and the sha256 of each verdict's source file.
    """
    budget = {"budget_s": race_config.budget_s} if race_config.budget_s is not None else {}
    return {"seed": seed, "preset": preset, "search_seed": race_config.search_seed,
            "rungs": list(race_config.rungs), "max_trials": race_config.max_trials, **budget,
            "prereg_version": prereg.version, "roles": dict(roles), **(extra or {})}


def _spec_diff(old: Any, new: dict[str, Any]) -> list[str]:
    if not isinstance(old, dict):
        return ["spec (missing from race.json: the race was started by an older version)"]
    keys = sorted(set(old) | set(new))
    return [f"{k}: recorded {old.get(k)!r}, now {new.get(k)!r}" for k in keys if old.get(k) != new.get(k)]


def _prepare_out(out: Path, *, seed: int, preset: str, spec: dict[str, Any], resume: bool, kind: str = "race") -> str:
    """Creates/validates the run directory and returns the run id (read back on resume; `kind` prefixes a new one)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write_probe"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise RaceSetupError(f"--out {out}: not a writable directory ({e.strerror or e})") from None
    manifest = out / "race.json"
    if resume and not manifest.is_file() and not _has_rows(out / "ledger.jsonl"):
        resume = False   # a race killed in its first seconds wrote nothing to continue: start it
    if resume:
        if not manifest.is_file():
            raise RaceSetupError(f"--resume: {manifest} not found; there is no race to resume in --out {out}")
        try:
            m = json.loads(manifest.read_text())
            run_id, m_seed, m_preset = m["run_id"], m["seed"], m["preset"]
        except (ValueError, KeyError, TypeError) as e:
            raise RaceSetupError(f"--resume: {manifest} is not a race manifest ({e})") from None
        if (m_seed, m_preset) != (seed, preset):
            raise RaceSetupError(f"--resume: {manifest} is a race with --seed {m_seed} --preset {m_preset}, "
                                 f"not --seed {seed} --preset {preset}")
        diff = _spec_diff(m.get("spec"), spec)
        if diff:
            raise RaceSetupError(f"--resume: {manifest} was started with another specification; a resumed race "
                                 f"must be the same race ({'; '.join(diff)}). Resume with the original flags "
                                 "or start a fresh --out")
        return run_id
    if manifest.exists() or (out / "ledger.jsonl").exists():
        raise RaceSetupError(f"--out {out} already holds a race; pass --resume to continue it or choose another --out")
    run_id = f"{kind}-s{seed}-{preset}-{utc_now().replace(':', '').replace('-', '')[:15]}"
    tmp = manifest.with_name("race.json.tmp")
    tmp.write_text(json.dumps({"run_id": run_id, "seed": seed, "preset": preset, "spec": spec,
                               "created": utc_now()}, indent=1))
    os.replace(tmp, manifest)
    return run_id


def _has_rows(ledger: Path) -> bool:
    try:
        return ledger.stat().st_size > 0
    except FileNotFoundError:
        return False


def recorded_budget(out: Path) -> float | None:
    """The budget_s in --out's race.json (None: none recorded, or no readable race.json)."""
    try:
        spec = json.loads((Path(out) / "race.json").read_text()).get("spec") or {}
    except (OSError, ValueError, AttributeError):
        return None
    b = spec.get("budget_s") if isinstance(spec, dict) else None
    return float(b) if isinstance(b, (int, float)) else None


def _rebuild_board(db: Path, rows: list[dict], prereg: Prereg) -> Leaderboard:
    """A fresh leaderboard mirroring the ledger rows (the ledger is the source of truth)."""
    for p in (db, db.with_name(db.name + "-journal")):
        if p.exists():
            p.unlink()
    board = Leaderboard(db, prereg=prereg)
    for r in rows:
        board_add(board, r)
    return board


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
             clock: Callable[[], float] = time.monotonic, report: bool = True) -> RaceOutcome:
    """Runs (or resumes) one race to its Finish action; see the module docstring for the files.

    budget_s: the race's size in wall seconds (the anytime race; igla_jax.anytime), counted from
    this call and cumulative across resumes (every row carries extra.elapsed_s); a resume without
    one takes the budget race.json records, so a resumed race gets what is left of it (the work in
    flight at a kill is redone and not charged). max_trials: a trial cap (default: the preset's
    count when there is no budget, none with one). deadline_s: a hard stop of this session (a pause:
    work in flight is cancelled, nothing is confirmed, --resume continues).

    spec_extra: what else defines the race (the CLI's accelerator flags, verdict-source hashes);
    recorded in race.json and compared on --resume. executor: "local", "population", "ray" or a
    Backend object (igla_jax.executor.Executor); workers: Train actions in flight at once (the
    race's slots, part of its specification; default the preset's, 1); deterministic: feed results
    in action-id order (default: when workers == 1); compile_cache: the XLA cache Ray workers use.
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
        from igla_jax.backends_live import BackendError, check_executor
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
    run_id = _prepare_out(out, seed=seed, preset=preset, spec=spec, resume=resume)
    ledger = Ledger(out / "ledger.jsonl")
    rows = [r for r in read_ledger(ledger.path).rows if r.get("run_id") == run_id]
    board = _rebuild_board(out / "race.db", rows, pr)
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
                  deterministic=deterministic, ray_address=ray_address, compile_cache=compile_cache)
    try:
        state, summary = ex.run()
        top = tuple(board.top(5))
    finally:
        board.close()
    final = tuple(r for r in read_ledger(ledger.path).rows if r["run_id"] == run_id)
    victory = _victory(final, summary, pr)
    if report:   # the CLI draws it itself, with the verdicts it judges on the ledger afterwards
        write_report(out, summary, run_id=run_id, preset=preset, victory=victory, wall_s=time.monotonic() - t0)
    return RaceOutcome(run_id=run_id, out=out, preset=preset, summary=summary, state=state, board_top=top,
                       ranking=ranking(state), victory=victory, rows=final,
                       executed=ex.executed, replayed=ex.replayed, wall_s=time.monotonic() - t0)


def write_report(out: Path, summary: RaceSummary, *, run_id: str, preset: str, victory: Any,
                 wall_s: float, final_verdicts: tuple = ()) -> Path | None:
    """summary.json (every verdict) beside the ledger, then report.png and report.html; returns the picture.

    The ledger is complete before this runs, so a report that cannot be drawn costs no data: it is said
    on stderr and `python -m experiments.report OUT` draws it again."""
    from igla_jax.run_report import ReportError, render, summary_record, write_summary
    write_summary(out, summary_record(summary, run_id=run_id, preset=preset, victory=victory, wall_s=wall_s,
                                      final_verdicts=final_verdicts))
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
    """Runs one race answered from a curve table (a path or a loaded igla_jax.replay.ReplayTable).

    The race is the live one (same RaceConfig from the preset and --seed, same sampler, filter,
    pruner and allocator), except: search trials train on the table's primary seed (the race's
    search seed), `workers` simulated workers, and no confirmation (the table holds no victory-seed
    runs), so a budget (simulated seconds) takes no confirmation reserve: the race starts trials until
    it is spent and ends at its first result past it, as the peers' replays do. Default sampler: RandomSampler over the table's uniform stratum (the live random sampler
    never proposes a phi-grid config). out None keeps the rows in memory (no victory verdict, no
    leaderboard); with out, race.json, ledger.jsonl and race.db are written as a live race writes them.
    """
    from igla_jax.backends import LedgerSink, MemorySink, drive
    from igla_jax.replay import ReplayBackend, ReplayTable, load_table, table_space
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
        run_id = _prepare_out(out, seed=seed, preset=preset, spec=spec, resume=False, kind="replay")
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


def is_confirmation_row(row: dict) -> bool:
    """A confirmation-phase row (confirm or reproduce, diverged or failed ones included): canonical-ledger material."""
    return (row.get("extra") or {}).get("action") in ("confirm", "reproduce")


def reconcile_canonical(canon: Ledger, run_rows: list[dict], run_id: str) -> frozenset:
    """Appends to the canonical ledger every confirmation row of this run it lacks; returns its keys.

    A kill between the run-ledger append and the canonical append would otherwise lose that row
    from assertions/seed_results.jsonl for good (resume answers the action from the run ledger and
    never writes it again). Keys are (run_id, event_id, status): nothing is appended twice.
    """
    keys = {(r["run_id"], r.get("event_id"), r["status"])
            for r in read_ledger(canon.path, missing_ok=True).rows if r["run_id"] == run_id}
    for r in run_rows:
        key = (r["run_id"], r.get("event_id"), r["status"])
        if r.get("run_id") == run_id and is_confirmation_row(r) and key not in keys:
            canon.append(r)
            keys.add(key)
    return frozenset(keys)


def _victory(rows: tuple, summary: RaceSummary, prereg: Prereg) -> Any:
    """winning_seeds on the champion's confirmation rows (one per victory seed; judged on test_bpb)."""
    if summary.champion_config is None:
        return None
    from igla_jax.victory import select_victory_rows, winning_seeds
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
