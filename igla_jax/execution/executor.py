"""The live executor: performs the race's actions on a compute backend, writes ledger and leaderboard rows.

The run's ledger is the single source of truth, written only here (the driver process), one
fsynced row at a time. Every row carries the action id as `event_id`. A decision (a prune, a
promotion) is written when the race makes it; a result row when its result reaches the race, with
`extra.arrival` = its place in that order (so result rows may arrive out of action-id order). On
resume the race is rebuilt from Start by feeding the recorded results back in arrival order
(`igla_jax.execution.backends.run_loop`): nothing is retrained, no row is written twice, and every action
still without a result (in flight at the kill, or cancelled at the budget's deadline) is run again
from its `from_checkpoint`. A kill -9 at any moment loses at most the actions in flight.
Checkpoints live at <out>/ckpt/<trial_id>/step_<n>.msgpack (a Ray cluster: on a filesystem every
worker can reach).
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from igla_jax.evidence.leaderboard import Leaderboard
from igla_jax.evidence.ledger import Ledger
from igla_jax.evidence.ledger_row import CodeVersion, LedgerRow, row_kind
from igla_jax.execution.ahead import AHEAD, CompileAhead
from igla_jax.execution.backends import run_loop
from igla_jax.execution.backends_live import lazy_backend
from igla_jax.execution.rows import (ACTION_KIND, RowMaker, board_add, elapsed_of, prune_row, promoted_row,
                                     result_row, with_elapsed)
from igla_jax.execution.runner import ActionRunner, Shape
from igla_jax.search.lookahead import upcoming
from igla_jax.search.race import Prune, Race, RaceState, Scored, Start, Train
from igla_jax.search.race_types import RaceSummary


class ResumeError(RuntimeError):
    """The ledger under --out does not belong to the race being resumed."""


def index_rows(rows: Sequence[dict], run_id: str) -> dict[tuple[int, str], dict]:
    """(event_id, kind) -> row for this run's rows; kind is promoted, pruned or result."""
    out: dict[tuple[int, str], dict] = {}
    for r in rows:
        if r.get("run_id") != run_id or r.get("event_id") is None:
            continue
        kind = row_kind(r["status"])
        out[(int(r["event_id"]), kind)] = r
    return out


def result_answers(rows: Sequence[dict], run_id: str) -> list[dict]:
    """This run's result rows in the order they reached the race: ledger order (extra.arrival, where present, agrees)."""
    out = [r for r in rows if r.get("run_id") == run_id and r.get("event_id") is not None
           and row_kind(r["status"]) == "result"]
    for i, r in enumerate(out):
        arrival = (r.get("extra") or {}).get("arrival")
        if arrival is not None and arrival != i:
            raise ResumeError(f"result row of event_id {r['event_id']} says it reached the race as number {arrival}, "
                              f"but it is result row {i} of run {run_id!r}: the ledger was reordered or edited")
    return out


class Executor:
    """Drives a Race to its Finish on a compute backend, writing the run's ledger (the driver's Recorder).

    backend: "local" (one action at a time, in-process; the default), "population" (same-shape
    actions submitted together train as one vmapped program where the trainer's `population_pays`
    says so), "ray" (one Ray task per action; igla_jax.execution.backends_ray) or a Backend object (tests).
    deterministic: feed results in action-id order (None: when the race has one worker slot), so
    runs on different backends or worker counts can be compared; otherwise in arrival order.
    deadline_s: a hard stop (seconds of `clock` from construction; not the race's size, which is
    `RaceConfig.budget_s`); in-flight work is cancelled there and `--resume` continues.
    compile_ahead: on the local backend, compile the next trials' programs in a background thread while one
    trains (igla_jax.execution.ahead); it changes no decision and no bit, only where the compile time goes.
    Race time: every row carries extra.elapsed_s = the race time its run's earlier sessions account
    for (the rows' largest elapsed_s) plus `clock` seconds since `t0` (default: construction).
    """

    def __init__(self, race: Race, shape: Shape, *, out: Path, run_id: str, version: CodeVersion,
                 ledger: Ledger, board: Leaderboard, rows: Sequence[dict] = (), trainer: Any = None,
                 filter: Any = None, deadline_s: float | None = None, clock: Callable[[], float] = time.monotonic,
                 on_event: Callable[[RaceState, Any], None] | None = None, canonical: Ledger | None = None,
                 canonical_keys: frozenset = frozenset(), backend: Any = "local", deterministic: bool | None = None,
                 ray_address: str | None = None, compile_cache: str | None = None, t0: float | None = None,
                 compile_ahead: bool = True):
        self.race, self.shape, self.out, self.run_id, self.version = race, shape, Path(out), run_id, version
        self.ledger, self.board, self.trainer, self.filter = ledger, board, trainer, filter
        self.deadline_s, self.clock, self.on_event = deadline_s, clock, on_event
        self.canonical, self.canonical_keys = canonical, set(canonical_keys)
        self.recorded = index_rows(rows, run_id)
        self.answers = result_answers(rows, run_id)
        self.backend, self.ray_address, self.compile_cache = backend, ray_address, compile_cache
        self.deterministic = race.config.workers == 1 if deterministic is None else bool(deterministic)
        self.backend_name = backend if isinstance(backend, str) else type(backend).__name__
        self.make = RowMaker(version, run_id, shape.preset)
        self.t0 = clock() if t0 is None else t0
        self.offset = elapsed_of([r for r in rows if r.get("run_id") == run_id])
        self.arrival = len(self.answers)
        self.replayed = 0
        self.executed = 0
        self.compile_ahead = compile_ahead
        self.ahead_s, self.ahead_n = 0.0, 0   # seconds and shapes the background compiler spent and compiled

    def run(self) -> tuple[RaceState, RaceSummary]:
        be, ahead = self.backend, None
        on_event = self.on_event
        if isinstance(be, str):
            runner = ActionRunner(self.shape, self.out.resolve(), self.trainer, self.compile_cache)
            be = lazy_backend(be, runner, workers=self.race.config.workers, address=self.ray_address)
            if self.backend == "local" and self.compile_ahead and runner.can_warm():
                ahead, on_event = self._ahead(runner)
        left = None if self.deadline_s is None else (lambda: self.deadline_s - (self.clock() - self.t0))
        try:
            done = run_loop(self.race, be, self, filter=self.filter, on_event=on_event, answers=self.answers,
                            check=self.check_row, deterministic=self.deterministic, time_left=left)
        finally:
            if ahead is not None:
                ahead.close(timeout=60.0)
                self.ahead_s, self.ahead_n = ahead.seconds, ahead.compiled
            close = getattr(be, "close", None)
            if close is not None:
                close()
        self.replayed = done.replayed
        return done.state, done.summary

    def _ahead(self, runner: ActionRunner) -> tuple[CompileAhead, Callable[[RaceState, Any], None]]:
        """A background compiler offered the race's next configs after Start and after every event (local backend:
        its trials train in this process, so the programs it compiles are the ones they use)."""
        ahead = CompileAhead(runner.warm, runner.shape_key)
        race, user = self.race, self.on_event
        if not self.answers:   # step is pure: this is the state run_loop starts from (a resume's first trials ran)
            ahead.offer(upcoming(race, race.step(race.init(), Start())[0], AHEAD))

        replaying = [len(self.answers)]   # a resume first feeds the recorded results: their trials are not trained

        def on_event(state: RaceState, ev: Any) -> None:
            if replaying[0] > 0 and not isinstance(ev, Scored):
                replaying[0] -= 1
            elif replaying[0] == 0:
                ahead.offer(upcoming(race, state, AHEAD))
            if user is not None:
                user(state, ev)
        return ahead, on_event

    def check_row(self, a: Any, row: dict) -> None:
        """The recorded row must answer exactly this action: config, seed, step, rung and kind."""
        if a is None:
            raise ResumeError(f"{self.ledger.path}: the result row with event_id {row['event_id']} answers no action "
                              "the replayed race is waiting for (the code, preset or seed changed since this run "
                              "started); use a fresh --out")
        extra = row.get("extra") or {}
        want = {"config": a.config.config_id, "seed": a.seed, "step": a.to_step, "kind": ACTION_KIND[type(a)],
                "rung": a.rung if isinstance(a, Train) else None}
        got = {"config": row["config_id"], "seed": row["seed"], "step": row["step"], "kind": extra.get("action"),
               "rung": extra.get("rung")}
        if row["status"] == "diverged":  # a diverged row records the step training stopped at
            lo = getattr(a, "from_step", 0)
            got["step"] = want["step"] if lo < row["step"] <= a.to_step else row["step"]
        bad = [k for k in want if want[k] != got[k]]
        if bad:
            diff = ", ".join(f"{k} {got[k]!r} (race asks {want[k]!r})" for k in bad)
            raise ResumeError(
                f"{self.ledger.path}: row with event_id {a.action_id} does not answer the replayed action: {diff} "
                "(the code, preset or seed changed since this run started); use a fresh --out")

    # ------------------------------------------------------------------ the driver's Recorder
    def elapsed(self) -> float:
        """Race time now: earlier sessions' time plus this session's."""
        return self.offset + (self.clock() - self.t0)

    def decided(self, a: Any, now: float) -> None:
        """A prune or a promotion, written when the race decides it (a resume finds it written)."""
        if isinstance(a, Prune):
            if (a.action_id, "pruned") not in self.recorded:
                self._append(with_elapsed(prune_row(self.make, a), self.elapsed()))
        elif (a.action_id, "promoted") not in self.recorded:
            self._append(with_elapsed(promoted_row(self.make, a), self.elapsed()))

    def resolved(self, action_id: int) -> None:
        """A Score or the Finish: nothing to write."""

    def result(self, a: Any, fin: Any) -> dict:
        """Writes the result row of a finished action with its arrival index; the race's event is read from it."""
        row = result_row(self.make, a, fin.result, reproduce_tol=self.race.config.reproduce_tol)
        how = {"backend": self.backend_name, "worker": fin.worker, "deterministic": self.deterministic,
               "start_s": round(float(fin.start_s), 3), "finish_s": round(float(fin.finish_s), 3), **fin.meta}
        row = dataclasses.replace(row, extra={**(row.extra or {}), "arrival": self.arrival, "executor": how,
                                              "elapsed_s": round(self.elapsed(), 3)})
        self.arrival += 1
        self.executed += 1
        return self._append(row)

    # ------------------------------------------------------------------ rows
    def _append(self, row: LedgerRow) -> dict:
        d = self.ledger.append(row)
        kind = row_kind(d["status"])
        self.recorded[(d["event_id"], kind)] = d
        board_add(self.board, d)
        key = (d["run_id"], d["event_id"], d["status"])
        # every confirmation-phase row, a failed reproduction or a diverged confirmation included
        confirming = (d.get("extra") or {}).get("action") in ("confirm", "reproduce")
        if self.canonical is not None and confirming and key not in self.canonical_keys:
            # a kill here leaves the row in the run ledger only: resume reconciles (race_runner.reconcile_canonical)
            self.canonical.append(d)
            self.canonical_keys.add(key)
        return d
