"""The ledger rows a driven race writes, and the race events read back from them.

Both the live executor (`igla_jax.execution.executor`) and the replay driver
(`igla_jax.execution.backends.drive`) write these rows, and both feed the race the event read
back from a result row (`event_from_row`), so a live event and the one a resume reads from the
ledger are equal.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Sequence

from igla_jax.evidence.leaderboard import Leaderboard
from igla_jax.evidence.ledger_row import RESULT_STATUSES, CodeVersion, LedgerRow
from igla_jax.search.race_types import Action, Confirm, ConfirmDone, Prune, Reproduce, ReproduceDone, RungDone, Train
from igla_jax.search.search_space import Config

Compute = (Train, Confirm, Reproduce)
ACTION_KIND = {Train: "train", Confirm: "confirm", Reproduce: "reproduce"}


def trial_of(a: Action) -> str:
    """Leaderboard/ledger trial id of a compute action."""
    if isinstance(a, Train):
        return a.trial_id
    return f"{'confirm' if isinstance(a, Confirm) else 'reproduce'}-s{a.seed}"


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
    if isinstance(a, (Confirm, Reproduce)) and a.total_steps is not None:
        extra["lr_horizon"] = int(a.total_steps)   # the search trials' schedule, stopped at to_step
    if getattr(res, "params", None) is not None:
        extra["params"] = int(res.params)
    extra["tokens_per_s"] = round(float(res.tokens_per_s), 3)
    if getattr(res, "compile_s", None) is not None:   # a live run: compile, training and evaluation seconds
        extra["timing"] = {k: round(float(getattr(res, k, None) or 0.0), 6) for k in TIMING}
    if isinstance(a, Train):
        extra["rung"] = a.rung
        extra["train_curve"] = curve_of(res)
    return make(a.config, seed=a.seed, step=step, bpb=bpb, status=status, event_id=a.action_id,
                wall_s=_wall(res), note=note, extra=extra, test_bpb=test_bpb)


TIMING = ("compile_s", "train_s", "eval_s", "init_s")


def curve_of(res: Any) -> list[float | None]:
    """The result's per-chunk training bits as the ledger stores them (6 decimals; non-finite = null)."""
    return [round(float(b), 6) if b is not None and math.isfinite(b) else None
            for b in getattr(res, "train_curve", ()) or ()]


def prune_row(make: RowMaker, a: Prune) -> LedgerRow:
    """The row of a Prune action: a stopped trial, or a candidate config the filter dropped."""
    extra = {"trial_id": a.trial_id, "action": "prune"} if a.trial_id else {"action": "filter"}
    if a.interval is not None:
        extra["interval"] = [round(float(x), 6) for x in a.interval]
    if a.verdict is not None:
        extra["verdict"] = a.verdict
    return make(a.config, seed=a.seed, step=a.step, bpb=a.bpb, status="pruned", event_id=a.action_id,
                decided_by=a.decided_by, score=a.score, note=a.reason, extra=extra)


def _wall(res: Any) -> float:
    """Wall seconds as recorded in the ledger (rounded), so a replayed event equals the live one."""
    return round(float(res.wall_s), 6)


def event_for(a: Any, bpb: float | None, status: str, cost_s: float, test_bpb: float | None = None,
              train_curve: Sequence[float | None] = (), elapsed_s: float | None = None) -> Any:
    """The race event answering compute action `a` (RungDone, ConfirmDone or ReproduceDone)."""
    if isinstance(a, Train):
        return RungDone(a.action_id, a.trial_id, a.rung, a.to_step, bpb, cost_s, status, tuple(train_curve), elapsed_s)
    if isinstance(a, Confirm):
        return ConfirmDone(a.action_id, a.seed, a.to_step, bpb, cost_s, status, test_bpb, elapsed_s)
    return ReproduceDone(a.action_id, a.seed, a.to_step, bpb, cost_s, status, elapsed_s)


def event_from_row(a: Any, row: LedgerRow | Mapping[str, Any]) -> Any:
    """The race event answering `a`, read from its result row (a LedgerRow or the ledger's dict), so a live
    event and the one a resume reads back from the ledger are equal."""
    if isinstance(row, LedgerRow):   # the fields its to_dict() would hold, read without building it
        bpb, status, wall, test, extra = row.bpb, row.status, row.wall_s, row.test_bpb, row.extra
    else:
        bpb, status, wall, test = row["bpb"], row["status"], row.get("wall_s"), row.get("test_bpb")
        extra = row.get("extra")
    extra = extra or {}
    t = extra.get("elapsed_s")
    return event_for(a, bpb, "diverged" if status == "diverged" else "ok", float(wall or 0.0),
                     test, extra.get("train_curve", ()), None if t is None else float(t))


def elapsed_of(rows: Sequence[Mapping[str, Any]]) -> float:
    """Race time a run's rows account for: the largest extra.elapsed_s (0 for none, or a ledger older than it)."""
    return max((float((r.get("extra") or {}).get("elapsed_s") or 0.0) for r in rows), default=0.0)


def with_elapsed(row: LedgerRow, elapsed_s: float) -> LedgerRow:
    """The row with extra.elapsed_s: cumulative race time (seconds, across resumes) when it was written."""
    return dataclasses.replace(row, extra={**(row.extra or {}), "elapsed_s": round(float(elapsed_s), 3)})


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
