"""The asynchronous compute-backend protocol (submit actions, poll finished ones, cancel) and its driver.

The race stays one pure `step(state, event) -> (state, actions)`; a backend performs its compute
actions (Train, Confirm, Reproduce) on its workers and hands back each one when it finishes.
`run_loop` drives a race against any backend: every result is fed to the race as it arrives
(or, `deterministic`, in action-id order, so backends and worker counts can be compared), a
filter's Score is answered at once, and a `Recorder` writes the rows. Backends:
`igla_jax.execution.replay.ReplayBackend` (a recorded curve table on a simulated clock; poll returns the
earliest finish, ties by the lower action id), `igla_jax.execution.backends_live` (`local`, `population`)
and `igla_jax.execution.backends_ray` (`ray`), which answer with real trainers on the wall clock.

Resume: `answers` are a run's recorded result rows in the order they reached the race; they are
fed back in that order (nothing recomputed) before any action is submitted, so the race passes
through exactly the states it passed through before the kill. Budget: `time_left` is a deadline;
at it, in-flight actions are cancelled (a resume redoes them from their checkpoints) and the race
gets BudgetExhausted.

`drive` (replays) writes rows to a sink (`MemorySink`, or `LedgerSink`: the run's ledger file and
leaderboard) in action-id order: a row waits until every lower action id has its rows. Each row's
extra[tag] records when its fact became known on the backend's clock (`sim_time_s`: a result at
its finish, a promotion or prune at its decision) and in what order (`arrival`): sorting a run's
rows by arrival gives the asynchronous order, which anytime regret needs.
"""
from __future__ import annotations

import collections
import dataclasses
import itertools
from typing import Any, Callable, Mapping, Protocol, Sequence, Union, runtime_checkable

from igla_jax.evidence.ledger_row import LedgerRow, normalize_row
from igla_jax.execution.rows import RowMaker, board_add, event_from_row, promoted_row, prune_row, result_row
from igla_jax.search.frozen import evolve
from igla_jax.search.race import BudgetExhausted, Finish, Prune, Race, RaceError, RaceState, Score, Scored, Start
from igla_jax.search.race_types import Confirm, RaceSummary, Reproduce, Train

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
    train_curve: tuple[float | None, ...] = ()   # mean training bits per chunk (a replay: the recorded chunks)
    compile_s: float | None = None   # live only (igla_jax.training.train.TrialResult): where the time went
    train_s: float | None = None
    eval_s: float | None = None
    init_s: float | None = None      # building the starting state, before wall_s began (igla_jax.training.train)


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
    """Performs compute actions on `workers` workers; `now` is its clock (seconds since it began).

    Live backends also take `poll(timeout=...)` (seconds to wait; None waits for a result) and may
    have `close()` (cancel what runs, free the workers), which the driver calls when it stops.
    """
    workers: int

    @property
    def now(self) -> float: ...

    def submit(self, action: ComputeAction, now: float) -> None:
        """Queues an action issued at time `now`; it starts when a worker is free (first come, first served)."""

    def poll(self) -> Finished | None:
        """The next action to finish; None when nothing is in flight (a live backend: or none finished in time).

        A replay advances its clock to that finish time (earliest, then lowest action id) and frees its worker.
        """

    def cancel(self, action_id: int) -> bool:
        """Drops a queued or running action (its worker is free from `now`); False when it is not in flight."""

    def in_flight(self) -> int:
        """Actions submitted and not yet polled or cancelled."""


class Recorder(Protocol):
    """Where a driven race's facts go (the live ledger, or a replay's id-ordered rows)."""

    def decided(self, action: Prune | Train, now: float) -> None:
        """A Prune, or a Train that continues a promoted trial, at the moment the race decided it."""

    def resolved(self, action_id: int) -> None:
        """A Score answered, or the Finish: actions that leave no row."""

    def result(self, action: ComputeAction, fin: Finished) -> LedgerRow | Mapping[str, Any]:
        """The result row of a finished action (the race's event is read back from it)."""


@dataclasses.dataclass(frozen=True)
class Looped:
    """How a driven race ended: final state, its Finish summary, results computed by the backend and replayed."""
    state: RaceState
    summary: RaceSummary
    answered: int
    replayed: int


def run_loop(race: Race, backend: Backend, rec: Recorder, *, filter: Any = None,
             on_event: Callable[[RaceState, Any], None] | None = None, answers: Sequence[Mapping[str, Any]] = (),
             check: Callable[[Any, Mapping[str, Any]], None] | None = None, deterministic: bool = False,
             time_left: Callable[[], float] | None = None, poll_s: float = 1.0) -> Looped:
    """Runs `race` from Start to its Finish on `backend` (see the module docstring).

    answers: recorded result rows in arrival order, fed first; check(action or None, row) must
    raise when a row does not answer the action the race is waiting for. time_left: seconds to
    the deadline (None: no budget); polls then wait at most poll_s, so the deadline is kept.
    """
    state, acts = race.step(race.init(), Start())
    todo = collections.deque(acts)
    waiting: dict[int, ComputeAction] = {}      # issued compute actions without their event yet
    unsent: list[ComputeAction] = []            # held back while recorded answers are replayed
    sent: set[int] = set()
    early: dict[int, Finished] = {}             # deterministic: finished, waiting for a lower action id
    recorded = collections.deque(answers)
    known = {int(r["event_id"]) for r in recorded}
    answered = replayed = 0

    def feed(ev: Any) -> None:
        nonlocal state
        state, new = race.step(state, ev)
        if on_event is not None:
            on_event(state, ev)
        todo.extend(new)

    def take(fin: Finished) -> None:
        nonlocal answered
        a = waiting.pop(fin.action_id)
        sent.discard(fin.action_id)
        answered += 1
        feed(event_from_row(a, rec.result(a, fin)))

    while True:
        while todo:
            a = todo.popleft()
            if isinstance(a, Finish):
                rec.resolved(a.action_id)
                return Looped(state, a.summary, answered, replayed)
            if isinstance(a, Prune):
                rec.decided(a, backend.now)
            elif isinstance(a, Score):
                if filter is None:
                    raise RaceError(f"Score action {a.action_id} without a filter to answer it")
                feed(Scored(a.action_id, tuple(float(s) for s in filter.score(a.candidates))))
                rec.resolved(a.action_id)
            else:
                if isinstance(a, Train) and a.promoted_by is not None:
                    rec.decided(a, backend.now)
                waiting[a.action_id] = a
                if a.action_id not in known:
                    unsent.append(a)
        if recorded:  # resume: the next result in the order it reached the race before
            row = recorded.popleft()
            a = waiting.pop(int(row["event_id"]), None)
            if check is not None:
                check(a, row)
            if a is None:
                raise RaceError(f"recorded result of action {row['event_id']} answers no action the race waits for")
            replayed += 1
            feed(event_from_row(a, row))
            continue
        if deterministic and waiting and min(waiting) in early:
            take(early.pop(min(waiting)))
            continue
        if time_left is not None and time_left() <= 0:  # the deadline: stop what runs, a resume redoes it
            for aid in sorted(sent):
                backend.cancel(aid)
            feed(BudgetExhausted())
            fin_act = next(x for x in todo if isinstance(x, Finish))
            rec.resolved(fin_act.action_id)
            return Looped(state, fin_act.summary, answered, replayed)
        for a in unsent:
            backend.submit(a, backend.now)
            sent.add(a.action_id)
        unsent.clear()
        if time_left is None:
            fin = backend.poll()
        else:
            fin = backend.poll(timeout=max(0.0, min(poll_s, time_left())))
        if fin is None:
            if backend.in_flight() == 0:
                raise RaceError("the race waits for events but the backend has nothing in flight")
            continue
        if deterministic:
            early[fin.action_id] = fin
        else:
            take(fin)


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


class _IdOrderRecorder:
    """A replay's rows: stamped under extra[tag] and written in action-id order (a row waits for every lower id)."""

    def __init__(self, sink: Any, make: RowMaker, mark: Mapping[str, Any], tag: str, origin: str, tol: float):
        self.sink, self.make, self.mark, self.tag, self.origin, self.tol = sink, make, mark, tag, origin, tol
        self.arrival = itertools.count()
        self.waiting: dict[int, list[LedgerRow]] = {}
        self.promos: dict[int, LedgerRow] = {}
        self.written: list[dict[str, Any]] = []
        self.next_id = 0

    def stamp(self, row: LedgerRow, t: float, note: str | None, meta: Mapping[str, Any] | None = None) -> LedgerRow:
        stamped = {**self.mark, "sim_time_s": round(t, 6), "arrival": next(self.arrival), **(meta or {})}
        text = f"{self.origin} from {self.mark.get('table')}" + (f": {note}" if note else "")
        return evolve(row, extra={**(row.extra or {}), self.tag: stamped}, note=text)

    def resolve(self, aid: int, rows: list[LedgerRow]) -> None:
        self.waiting[aid] = rows
        while self.next_id in self.waiting:
            self.written.extend(self.sink.append(r) for r in self.waiting.pop(self.next_id))
            self.next_id += 1

    def decided(self, a: Any, now: float) -> None:
        if isinstance(a, Prune):
            self.resolve(a.action_id, [self.stamp(prune_row(self.make, a), now, a.reason)])
        else:
            p = promoted_row(self.make, a)
            self.promos[a.action_id] = self.stamp(p, now, p.note)

    def resolved(self, action_id: int) -> None:
        self.resolve(action_id, [])

    def result(self, a: ComputeAction, fin: Finished) -> LedgerRow:
        row = result_row(self.make, a, fin.result, reproduce_tol=self.tol)
        note = "; ".join(n for n in (fin.note, row.note) if n) or None
        row = self.stamp(row, fin.finish_s, note, {"issued_s": round(fin.issued_s, 6), "start_s": round(fin.start_s, 6),
                                                   "worker": fin.worker, **fin.meta})
        # race time of a replay: the simulated clock at the finish (what a live row's extra.elapsed_s is)
        row = evolve(row, extra={**row.extra, "elapsed_s": round(fin.finish_s, 6)})
        promo = [self.promos.pop(a.action_id)] if a.action_id in self.promos else []
        self.resolve(a.action_id, promo + [row])
        return row


def drive(race: Race, backend: Backend, *, sink: Any, make: RowMaker, mark: Mapping[str, Any], filter: Any = None,
          on_event: Callable[[RaceState, Any], None] | None = None, tag: str = "replayed",
          origin: str = "replayed") -> Driven:
    """Runs `race` to its Finish against a (replay) backend with `run_loop`, results in finish order.

    Every row gets extra[tag] = mark + its timing (+ the backend's meta on result rows) and a note
    starting "<origin> from <mark['table']>"; rows are written in action-id order.
    """
    rec = _IdOrderRecorder(sink, make, mark, tag, origin, race.config.reproduce_tol)
    done = run_loop(race, backend, rec, filter=filter, on_event=on_event)
    if rec.waiting:
        raise RaceError(f"actions {sorted(rec.waiting)} were answered but action {rec.next_id} never was")
    return Driven(done.state, done.summary, tuple(rec.written), backend.now, done.answered)
