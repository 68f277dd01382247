"""Performs the race's actions: trains, writes ledger and leaderboard rows, feeds events back.

The run's ledger is the single source of truth. Every row carries the action id as `event_id`;
on resume the race is rebuilt by replaying it from Start: an action whose result row exists is
answered from that row (nothing is retrained, no row is written twice), and the first action
without one is executed again from its `from_checkpoint`. Rows are written in action-id order,
each after its training finished, so a kill -9 at any moment loses at most the action running.
Checkpoints live at <out>/ckpt/<trial_id>/step_<n>.msgpack.
"""
from __future__ import annotations

import collections
import dataclasses
import math
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from igla_jax.ledger import RESULT_STATUSES, CodeVersion, Ledger, LedgerRow, row_kind
from igla_jax.leaderboard import Leaderboard
from igla_jax.race import (Action, BudgetExhausted, Confirm, ConfirmDone, Finish, Prune, Race, RaceState,
                           Reproduce, ReproduceDone, RungDone, Score, Scored, Start, Train)
from igla_jax.race_types import RaceSummary
from igla_jax.search_space import Config, SearchSpace

Compute = (Train, Confirm, Reproduce)
ACTION_KIND = {Train: "train", Confirm: "confirm", Reproduce: "reproduce"}


class ResumeError(RuntimeError):
    """The ledger under --out does not belong to the race being resumed."""


class _BudgetStop(Exception):
    """Raised from the trainer's progress callback when the wall-clock budget is spent."""


@dataclasses.dataclass(frozen=True)
class Shape:
    """The fixed (non-searched) settings of a race preset that the executor needs to train."""
    preset: str
    space: SearchSpace
    context: int
    batch: int


def trial_of(a: Action) -> str:
    """Leaderboard/ledger trial id of a compute action."""
    if isinstance(a, Train):
        return a.trial_id
    return f"{'confirm' if isinstance(a, Confirm) else 'reproduce'}-s{a.seed}"


def index_rows(rows: Sequence[dict], run_id: str) -> dict[tuple[int, str], dict]:
    """(event_id, kind) -> row for this run's rows; kind is promoted, pruned or result."""
    out: dict[tuple[int, str], dict] = {}
    for r in rows:
        if r.get("run_id") != run_id or r.get("event_id") is None:
            continue
        kind = row_kind(r["status"])
        out[(int(r["event_id"]), kind)] = r
    return out


class Executor:
    """Drives a Race to its Finish action with the real (or an injected) trainer."""

    def __init__(self, race: Race, shape: Shape, *, out: Path, run_id: str, version: CodeVersion,
                 ledger: Ledger, board: Leaderboard, recorded: dict[tuple[int, str], dict],
                 trainer: Any = None, filter: Any = None, budget_s: float | None = None,
                 clock: Callable[[], float] = time.monotonic, on_event: Callable[[RaceState, Any], None] | None = None,
                 canonical: Ledger | None = None, canonical_keys: frozenset = frozenset()):
        if trainer is None:
            from igla_jax import train as trainer  # lazy: pulls in jax/optax
        self.race, self.shape, self.out, self.run_id, self.version = race, shape, out, run_id, version
        self.ledger, self.board, self.recorded = ledger, board, recorded
        self.trainer, self.filter, self.budget_s, self.clock = trainer, filter, budget_s, clock
        self.on_event, self.canonical, self.canonical_keys = on_event, canonical, set(canonical_keys)
        self.make = RowMaker(version, run_id, shape.preset)
        self.t0 = clock()
        self.replayed = 0
        self.executed = 0

    # ------------------------------------------------------------------ loop
    def run(self) -> tuple[RaceState, RaceSummary]:
        state, acts = self.race.step(self.race.init(), Start())
        queue = collections.deque(acts)
        while queue:
            a = queue.popleft()
            if isinstance(a, Finish):
                return state, a.summary
            if isinstance(a, Prune):
                self._write_prune(a)
                continue
            if isinstance(a, Score):
                events = [Scored(a.action_id, tuple(float(s) for s in self.filter.score(a.candidates)))]
            else:
                batch = [a]
                while queue and isinstance(queue[0], Compute):
                    batch.append(queue.popleft())
                events = self._compute(batch)
            for ev in events:
                state, new = self.race.step(state, ev)
                if self.on_event is not None:
                    self.on_event(state, ev)
                if isinstance(ev, BudgetExhausted):  # drop what is queued: a resume re-derives it
                    return state, next(x for x in new if isinstance(x, Finish)).summary
                queue.extend(new)
        raise RuntimeError("the race ended without a Finish action")  # pragma: no cover

    def over_budget(self) -> bool:
        return self.budget_s is not None and self.clock() - self.t0 >= self.budget_s

    def _compute(self, batch: list) -> list:
        """Events for a run of consecutive compute actions, in action-id order.

        Each result row is written as soon as every earlier action of the batch has its row, so a
        crash or a budget stop keeps all finished work; events are then read back from the rows,
        which makes a live event and its replay identical.
        """
        todo = [a for a in batch if (a.action_id, "result") not in self.recorded]
        self.replayed += len(batch) - len(todo)
        done: dict[int, Any] = {}
        written = 0
        stopped = self.over_budget() if todo else False
        if todo and not stopped:
            try:
                for aid, res in self._train_all(todo):
                    done[aid] = res
                    while written < len(todo) and todo[written].action_id in done:
                        self._write_result(todo[written], done[todo[written].action_id])
                        written += 1
            except _BudgetStop:
                stopped = True
        events = []
        for a in batch:
            row = self.recorded.get((a.action_id, "result"))
            if row is None:
                events.append(BudgetExhausted())
                break
            self._check_row(a, row)
            events.append(event_for(a, row["bpb"], "diverged" if row["status"] == "diverged" else "ok",
                                    float(row.get("wall_s") or 0.0), row.get("test_bpb")))
        return events

    def _check_row(self, a: Any, row: dict) -> None:
        """The recorded row must answer exactly this action: config, seed, step, rung and kind."""
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

    # ------------------------------------------------------------------ training
    def ckpt_path(self, name: str | None) -> Path | None:
        return None if name is None else self.out / "ckpt" / f"{name}.msgpack"

    def _configs(self, a: Any) -> tuple[Any, Any]:
        s = self.shape
        mc = a.config.to_model_config(context=s.context, head_dim=s.space.head_dim)
        horizon = a.total_steps if isinstance(a, Train) else a.to_step
        return mc, a.config.to_train_config(seed=a.seed, total_steps=horizon, batch=s.batch)

    def _progress(self, step: int, to_step: int, bits: float) -> None:
        if self.over_budget():
            raise _BudgetStop()

    def _train_all(self, todo: list) -> Iterator[tuple[int, Any]]:
        """Yields (action id, result) as trainings finish (same-shape groups as one population when it pays).

        Only Confirm actions (victory runs) are also scored on the test half.
        """
        groups: dict[tuple, list] = {}
        for a in todo:  # one compiled program per shape: dropout and the EMA beta are traced
            mc, tc = self._configs(a)
            groups.setdefault((mc.shape(), a.to_step), []).append((a, mc, tc))
        pays = getattr(self.trainer, "population_pays", None)
        for (shape, to_step), members in groups.items():
            if len(members) > 1 and pays is not None and hasattr(self.trainer, "run_population") and pays(shape, len(members)):
                res = self.trainer.run_population(
                    [mc for _, mc, _ in members], [tc for _, _, tc in members], to_step=to_step,
                    from_checkpoints=[self.ckpt_path(getattr(a, "from_checkpoint", None)) for a, _, _ in members],
                    save_checkpoints=[self.ckpt_path(getattr(a, "save_checkpoint", None)) for a, _, _ in members],
                    progress=self._progress, eval_tests=[isinstance(a, Confirm) for a, _, _ in members])
                yield from ((a.action_id, r) for (a, _, _), r in zip(members, res))
                continue
            for a, mc, tc in members:
                yield a.action_id, self.trainer.run_trial(
                    mc, tc, to_step=to_step, from_checkpoint=self.ckpt_path(getattr(a, "from_checkpoint", None)),
                    save_checkpoint=self.ckpt_path(getattr(a, "save_checkpoint", None)), progress=self._progress,
                    eval_test=isinstance(a, Confirm))

    # ------------------------------------------------------------------ rows
    def _append(self, row: LedgerRow) -> None:
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

    def _write_result(self, a: Any, res: Any) -> None:
        if isinstance(a, Train) and a.promoted_by is not None and (a.action_id, "promoted") not in self.recorded:
            self._append(promoted_row(self.make, a))
        self._append(result_row(self.make, a, res, reproduce_tol=self.race.config.reproduce_tol))
        self.executed += 1

    def _write_prune(self, a: Prune) -> None:
        if (a.action_id, "pruned") in self.recorded:
            return
        self._append(prune_row(self.make, a))


@dataclasses.dataclass(frozen=True)
class RowMaker:
    """Stamps the ledger rows of one run with its code version, run id and preset."""
    version: CodeVersion
    run_id: str
    preset: str

    def __call__(self, cfg: Config, *, seed: int, step: int, bpb: float | None, status: str, event_id: int,
                 extra: dict, **kw: Any) -> LedgerRow:
        return LedgerRow.stamped(self.version, run_id=self.run_id, config_id=cfg.config_id, config=cfg.to_dict(),
                                 family=cfg.family, seed=seed, step=step, bpb=bpb, status=status,
                                 event_id=event_id, preset=self.preset, extra=extra, **kw)


def promoted_row(make: RowMaker, a: Train) -> LedgerRow:
    """The row recording that ASHA promoted a trial (written just before the continuation's result row)."""
    return make(a.config, seed=a.seed, step=a.from_step, bpb=a.promoted_score, status="promoted",
                event_id=a.action_id, decided_by=a.promoted_by, score=a.promoted_score,
                note=f"promoted to rung {a.rung + 1}",
                extra={"trial_id": trial_of(a), "rung": a.rung - 1, "action": "promote"})


def result_row(make: RowMaker, a: Any, res: Any, *, reproduce_tol: float) -> LedgerRow:
    """The result row of a compute action; res is a train.TrialResult or anything with its fields
    (a result without `params`, e.g. a replayed one, leaves it out of extra)."""
    tid = trial_of(a)
    ok = res.status == "ok" and math.isfinite(res.val_bpb)
    kind = ACTION_KIND[type(a)]
    note, test_bpb = None, None
    if not ok:
        status, bpb, step = "diverged", None, int(res.step)
        note = f"non-finite training loss by step {res.step}"
    elif isinstance(a, Confirm):
        status, bpb, step = "confirmed", float(res.val_bpb), a.to_step
        test = getattr(res, "test_bpb", None)
        if test is None or not math.isfinite(test):
            raise RuntimeError(f"trainer returned no finite test_bpb for the victory run {a!r}")
        test_bpb = float(test)
    elif isinstance(a, Reproduce):
        delta = abs(float(res.val_bpb) - a.original_bpb)
        good = delta <= reproduce_tol
        status, bpb, step = ("reproduced" if good else "trained"), float(res.val_bpb), a.to_step
        note = (f"from-scratch re-run vs original {a.original_bpb!r}: |delta| = {delta:.3g} "
                f"{'<=' if good else '>'} tol {reproduce_tol}")
    else:
        status, bpb, step = "trained", float(res.val_bpb), a.to_step
    extra = {"trial_id": tid, "action": kind, "from_step": getattr(a, "from_step", 0)}
    if getattr(res, "params", None) is not None:
        extra["params"] = int(res.params)
    extra["tokens_per_s"] = round(float(res.tokens_per_s), 3)
    if isinstance(a, Train):
        extra["rung"] = a.rung
    return make(a.config, seed=a.seed, step=step, bpb=bpb, status=status, event_id=a.action_id,
                wall_s=_wall(res), note=note, extra=extra, test_bpb=test_bpb)


def prune_row(make: RowMaker, a: Prune) -> LedgerRow:
    """The row of a Prune action: a stopped trial, or a candidate config the filter dropped."""
    extra = {"trial_id": a.trial_id, "action": "prune"} if a.trial_id else {"action": "filter"}
    return make(a.config, seed=a.seed, step=a.step, bpb=a.bpb, status="pruned", event_id=a.action_id,
                decided_by=a.decided_by, score=a.score, note=a.reason, extra=extra)


def _wall(res: Any) -> float:
    """Wall seconds as recorded in the ledger (rounded), so a replayed event equals the live one."""
    return round(float(res.wall_s), 6)


def event_for(a: Any, bpb: float | None, status: str, cost_s: float, test_bpb: float | None = None) -> Any:
    """The race event answering compute action `a` (RungDone, ConfirmDone or ReproduceDone)."""
    if isinstance(a, Train):
        return RungDone(a.action_id, a.trial_id, a.rung, a.to_step, bpb, cost_s, status)
    if isinstance(a, Confirm):
        return ConfirmDone(a.action_id, a.seed, a.to_step, bpb, cost_s, status, test_bpb)
    return ReproduceDone(a.action_id, a.seed, a.to_step, bpb, cost_s, status)


def board_add(board: Leaderboard, row: dict) -> None:
    """Mirrors one ledger row into the leaderboard (idempotent; rows without a trial are skipped)."""
    extra = row.get("extra") or {}
    tid = extra.get("trial_id")
    if not tid:
        return
    board.record_trial(tid, run_id=row["run_id"], config_id=row["config_id"], family=row["family"],
                       seed=row["seed"], config=row["config"], status=row["status"], created_ts=row["ts"])
    if row["status"] in RESULT_STATUSES:
        board.record_eval(tid, row["step"], row["bpb"], row["status"], ts=row["ts"])
