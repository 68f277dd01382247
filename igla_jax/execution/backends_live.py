"""Live compute backends for `igla_jax.execution.backends.run_loop`: `local`, `population`, and the constructor of all three.

`local` performs one action at a time in this process; `population` does the same but trains every
queued action of the head's shape and step (a promoted trial joining from its checkpoint included)
as one vmapped program (`train.run_population`) where the trainer's `population_pays` says it
pays. Both train on one worker thread, so the driver keeps its deadline while a trial trains;
`cancel` stops a trial at its next progress call (in-process, so raising there is safe). Work
starts only when the driver polls with no finished result waiting: actions submitted together
(between two polls) meet in one queue and can form one population. `ray` lives in
`igla_jax.execution.backends_ray` and needs the optional extra.
"""
from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import threading
import time
from typing import Any, Callable

from igla_jax.execution.backends import Finished
from igla_jax.execution.runner import ActionRunner, BackendError

EXECUTORS = ("local", "population", "ray")


class _Cancelled(Exception):
    """Raised in the worker thread, from the trainer's progress callback, once its job is cancelled."""


@dataclasses.dataclass
class _Job:
    actions: list
    issued: dict[int, float]
    start_s: float
    stop: threading.Event
    cancelled: set[int]
    future: concurrent.futures.Future | None = None


class InProcessBackend:
    """`local` (group=False) and `population` (group=True): one worker thread in this process."""

    def __init__(self, runner: ActionRunner, *, group: bool = False, clock: Callable[[], float] = time.monotonic):
        self.runner, self.group, self.clock = runner, group, clock
        self.workers = 1
        self.name = "population" if group else "local"
        self._t0 = clock()
        self._queue: list[tuple[Any, float]] = []
        self._ready: collections.deque[Finished] = collections.deque()
        self._job: _Job | None = None
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"igla-{self.name}")

    @property
    def now(self) -> float:
        return self.clock() - self._t0

    def submit(self, action: Any, now: float) -> None:
        self._queue.append((action, float(now)))

    def in_flight(self) -> int:
        job = len(self._job.actions) - len(self._job.cancelled) if self._job is not None else 0
        return len(self._queue) + len(self._ready) + job

    def cancel(self, action_id: int) -> bool:
        for i, (a, _) in enumerate(self._queue):
            if a.action_id == action_id:
                del self._queue[i]
                return True
        for f in self._ready:
            if f.action_id == action_id:
                self._ready.remove(f)
                return True
        job = self._job
        if job is None or action_id in job.cancelled or action_id not in {a.action_id for a in job.actions}:
            return False
        job.cancelled.add(action_id)
        if len(job.cancelled) == len(job.actions):
            job.stop.set()
        return True

    def _start(self) -> None:
        head = self._queue[0][0]
        members = [head]
        if self.group:
            k = self.runner.key(head)
            same = [a for a, _ in self._queue if self.runner.key(a) == k]
            if self.runner.pays(same):
                members = same
        ids = {a.action_id for a in members}
        issued = {a.action_id: t for a, t in self._queue if a.action_id in ids}
        self._queue = [(a, t) for a, t in self._queue if a.action_id not in ids]
        job = _Job(members, issued, self.now, threading.Event(), set())

        def progress(step: int, to_step: int, bits: float) -> None:
            if job.stop.is_set():
                raise _Cancelled()

        job.future = self._pool.submit(self.runner.run_group, members, progress)
        self._job = job

    def poll(self, timeout: float | None = None) -> Finished | None:
        """The next finished action; None when nothing is in flight or none finished within `timeout` seconds."""
        while True:
            if self._ready:
                return self._ready.popleft()
            if self._job is None:
                if not self._queue:
                    return None
                self._start()
            job = self._job
            try:
                results = job.future.result(timeout)
            except concurrent.futures.TimeoutError:
                return None
            except _Cancelled:
                self._job = None
                continue
            except BaseException:
                self._job = None
                raise
            self._job = None
            end = self.now
            for a, r in zip(job.actions, results):
                if a.action_id not in job.cancelled:
                    self._ready.append(Finished(a, job.issued[a.action_id], job.start_s, end, 0, r,
                                                {"population": len(job.actions)} if len(job.actions) > 1 else {}))

    def close(self) -> None:
        """Drops the queue and stops the running trial at its next progress call (waits for it)."""
        self._queue.clear()
        self._ready.clear()
        job, self._job = self._job, None
        if job is not None:
            job.stop.set()
            try:
                job.future.result()
            except BaseException:  # noqa: BLE001 - cancelled, or already reported by poll
                pass
        self._pool.shutdown(wait=True)


class LazyBackend:
    """Builds the named backend on its first submit, so a resume that only replays the ledger starts nothing."""

    def __init__(self, factory: Callable[[], Any], workers: int):
        self._factory, self._backend, self.workers = factory, None, workers

    def _get(self) -> Any:
        if self._backend is None:
            self._backend = self._factory()
        return self._backend

    @property
    def now(self) -> float:
        return 0.0 if self._backend is None else self._backend.now

    def submit(self, action: Any, now: float) -> None:
        self._get().submit(action, now)

    def poll(self, timeout: float | None = None) -> Finished | None:
        return None if self._backend is None else self._backend.poll(timeout=timeout)

    def cancel(self, action_id: int) -> bool:
        return False if self._backend is None else self._backend.cancel(action_id)

    def in_flight(self) -> int:
        return 0 if self._backend is None else self._backend.in_flight()

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()


def check_executor(name: str, *, ray_address: str | None = None) -> None:
    """Raises BackendError for an unknown executor name or a `ray` executor without Ray installed."""
    if name not in EXECUTORS:
        raise BackendError(f"--executor {name!r}: choose one of {', '.join(EXECUTORS)}")
    if ray_address is not None and name != "ray":
        raise BackendError(f"--ray-address {ray_address!r} needs --executor ray (got --executor {name})")
    if name == "ray":
        from igla_jax.execution.backends_ray import require_ray
        require_ray()


def lazy_backend(name: str, runner: ActionRunner, *, workers: int, address: str | None = None) -> LazyBackend:
    """The backend `name` (see EXECUTORS) for a race with `workers` slots, built on first use."""
    check_executor(name, ray_address=address)
    if name == "ray":
        from igla_jax.execution.backends_ray import RayBackend
        return LazyBackend(lambda: RayBackend(runner, workers=workers, address=address), workers)
    return LazyBackend(lambda: InProcessBackend(runner, group=name == "population"), workers)
