"""The asynchronous compute-backend protocol: submit actions, poll finished ones in finish order, cancel.

The race stays one pure `step(state, event) -> (state, actions)`; a backend performs its compute
actions (Train, Confirm, Reproduce) on n workers and hands back each one when it finishes. The
order is the backend's clock: `poll` returns the action that finished first, ties broken by the
lower action id, so a run of the race is a function of its seed and the backend's answers.
`igla_jax.replay.ReplayBackend` answers from a recorded learning-curve table on a simulated
clock; an asynchronous live backend (the scale-out issue) implements the same calls with real
trainers and wall time, and `drive` runs the race against either.

`drive` writes the live executor's rows (its row helpers) to a sink (`MemorySink`, or
`LedgerSink`: the run's ledger file and leaderboard) in action-id order, as the ledger rule
wants (event ids never decrease within a run): a row waits until every lower action id has its
rows. Each row's extra[tag] records when its fact became known on the backend's clock
(`sim_time_s`: a result at its finish, a promotion or prune at its decision) and in what order
(`arrival`): sorting a run's rows by arrival gives the asynchronous order, which anytime regret needs.
"""
from __future__ import annotations

import collections
import dataclasses
import itertools
from typing import Any, Callable, Mapping, Protocol, Union, runtime_checkable

from igla_jax.executor import RowMaker, board_add, event_for, promoted_row, prune_row, result_row
from igla_jax.ledger import LedgerRow, normalize_row
from igla_jax.race import Finish, Prune, Race, RaceError, RaceState, Score, Scored, Start
from igla_jax.race_types import Confirm, RaceSummary, Reproduce, Train

ComputeAction = Union[Train, Confirm, Reproduce]


@dataclasses.dataclass(frozen=True)
class Result:
    """What a compute action measured; the fields the executor's rows read from a train.TrialResult.

    params is None when the backend does not know it (a replay); test_bpb only for Confirm.
    """
    val_bpb: float
    status: str                  # "ok" | "diverged"
    step: int                    # the step asked for, or where training stopped when it diverged
    params: int | None
    tokens_per_s: float
    wall_s: float                # seconds charged to the action (a replay: simulated, compile included)
    test_bpb: float | None = None


@dataclasses.dataclass(frozen=True)
class Finished:
    """One finished action: when it was issued, started and finished (backend clock), on which worker, and its result.

    meta: provenance the backend wants on the action's ledger row (a replay: the table, the
    recorded seed that answered it, the compile seconds charged).
    """
    action: ComputeAction
    issued_s: float
    start_s: float
    finish_s: float
    worker: int
    result: Result
    meta: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    note: str | None = None      # put before the result row's own note (a replay: which recorded run answered)

    @property
    def action_id(self) -> int:
        return self.action.action_id


@runtime_checkable
class Backend(Protocol):
    """Performs compute actions on `workers` workers; `now` is its clock (seconds since the race began)."""
    workers: int

    @property
    def now(self) -> float: ...

    def submit(self, action: ComputeAction, now: float) -> None:
        """Queues an action issued at time `now`; it starts when a worker is free (first come, first served)."""

    def poll(self) -> Finished | None:
        """The next action to finish (earliest finish time, then lowest action id); None when nothing is in flight.

        Advances the clock to that finish time and frees its worker for the queued actions.
        """

    def cancel(self, action_id: int) -> bool:
        """Drops a queued or running action (its worker is free from `now`); False when it is not in flight."""

    def in_flight(self) -> int:
        """Actions submitted and not yet polled or cancelled."""


# ---------------------------------------------------------------- sinks and the driver
class MemorySink:
    """Validated rows kept in memory (the harness: thousands of replays, no files)."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def append(self, row: LedgerRow) -> dict[str, Any]:
        d = normalize_row(row)
        self.rows.append(d)
        return d


class LedgerSink:
    """The run's ledger file and its SQLite leaderboard, as the live executor writes them."""

    def __init__(self, ledger: Any, board: Any) -> None:
        self.ledger, self.board = ledger, board

    def append(self, row: LedgerRow) -> dict[str, Any]:
        d = self.ledger.append(row)
        board_add(self.board, d)
        return d


@dataclasses.dataclass(frozen=True)
class Driven:
    """A driven race: final state, its Finish summary, the rows written (ledger order), the backend clock at the end."""
    state: RaceState
    summary: RaceSummary
    rows: tuple[dict[str, Any], ...]
    sim_s: float
    answered: int


def drive(race: Race, backend: Backend, *, sink: Any, make: RowMaker, mark: Mapping[str, Any], filter: Any = None,
          on_event: Callable[[RaceState, Any], None] | None = None, tag: str = "replayed",
          origin: str = "replayed") -> Driven:
    """Runs `race` to its Finish against an asynchronous backend (see the module docstring).

    Events reach the pure race in the backend's finish order; a filter's Score is answered at
    once (zero time), as the live executor does. Every row gets extra[tag] = mark + its timing
    (+ the backend's meta on result rows) and a note starting "<origin> from <mark['table']>".
    """
    tol = race.config.reproduce_tol
    arrival = itertools.count()
    waiting: dict[int, list[LedgerRow]] = {}
    promos: dict[int, LedgerRow] = {}
    written: list[dict[str, Any]] = []
    next_id = 0

    def stamp(row: LedgerRow, t: float, note: str | None, meta: Mapping[str, Any] | None = None) -> LedgerRow:
        stamped = {**mark, "sim_time_s": round(t, 6), "arrival": next(arrival), **(meta or {})}
        extra = {**(row.extra or {}), tag: stamped}
        text = f"{origin} from {mark.get('table')}" + (f": {note}" if note else "")
        return dataclasses.replace(row, extra=extra, note=text)

    def resolve(aid: int, rows: list[LedgerRow]) -> None:
        nonlocal next_id
        waiting[aid] = rows
        while next_id in waiting:
            written.extend(sink.append(r) for r in waiting.pop(next_id))
            next_id += 1

    state, acts = race.step(race.init(), Start())
    todo = collections.deque(acts)
    summary, answered = None, 0
    while True:
        while todo:
            a = todo.popleft()
            now = backend.now
            if isinstance(a, Finish):
                summary = a.summary
                resolve(a.action_id, [])
            elif isinstance(a, Prune):
                resolve(a.action_id, [stamp(prune_row(make, a), now, a.reason)])
            elif isinstance(a, Score):
                if filter is None:
                    raise RaceError(f"Score action {a.action_id} without a filter to answer it")
                scored = Scored(a.action_id, tuple(float(s) for s in filter.score(a.candidates)))
                state, new = race.step(state, scored)
                if on_event is not None:
                    on_event(state, scored)
                resolve(a.action_id, [])
                todo.extend(new)
            else:
                if isinstance(a, Train) and a.promoted_by is not None:
                    p = promoted_row(make, a)
                    promos[a.action_id] = stamp(p, now, p.note)
                backend.submit(a, now)
        if summary is not None:
            break
        fin = backend.poll()
        if fin is None:
            raise RaceError("the race waits for events but the backend has nothing in flight")
        a, res = fin.action, fin.result
        bpb = res.val_bpb if res.status == "ok" else None
        ev = event_for(a, bpb, res.status, round(float(res.wall_s), 6), res.test_bpb)
        row = result_row(make, a, res, reproduce_tol=tol)
        note = "; ".join(n for n in (fin.note, row.note) if n) or None
        rows = [stamp(row, fin.finish_s, note, {"issued_s": round(fin.issued_s, 6), "start_s": round(fin.start_s, 6),
                                                "worker": fin.worker, **fin.meta})]
        answered += 1
        state, new = race.step(state, ev)
        if on_event is not None:
            on_event(state, ev)
        resolve(a.action_id, ([promos.pop(a.action_id)] if a.action_id in promos else []) + rows)
        todo.extend(new)
    if waiting:
        raise RaceError(f"actions {sorted(waiting)} were answered but action {next_id} never was")
    return Driven(state, summary, tuple(written), backend.now, answered)
