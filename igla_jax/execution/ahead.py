"""Compiling the next trials' programs while the current one trains (issue 23).

A quick race on CPU spends a third of its cold wall time compiling each new shape's programs on the
critical path. `CompileAhead` takes that off it: after every race event the executor offers it the
configs the race would start next (`igla_jax.search.lookahead.upcoming`), and a background thread
builds each one's starting state and compiles its training and evaluation programs (the trainer's
`warm_programs`), newest offer first, each shape once. A trial whose program is ready finds it; one
whose program is being compiled waits for that compile (`igla_jax.training.programs`: the wait is
what its row's compile_s then counts). The programs are the ones the trial would have compiled
itself, so no decision and no bit changes (tests/test_programs.py compares ledgers with and
without). One thread on a small host, so at most one compile competes with training for 2 cores;
more on a many-core host (`default_threads`).
"""
from __future__ import annotations

import os
import threading
from typing import Any, Callable, Sequence

AHEAD = 3   # configs offered after each event: enough to run ahead of first rungs shorter than a compile


def default_threads() -> int:
    """One compile thread on a laptop-class host (2-4 cores: training needs the rest); on a many-core host
    one per four cores, at most four (XLA compiles one program on one core)."""
    return max(1, min(4, (os.cpu_count() or 1) // 4))


class CompileAhead:
    """A background compiler of configs' programs; `offer` never blocks, `close` stops it after the current compiles."""

    def __init__(self, warm: Callable[[Any], float], key: Callable[[Any], Any], threads: int | None = None):
        self._warm, self._key = warm, key
        self._cv = threading.Condition()
        self._todo: list[Any] = []
        self._seen: set = set()
        self._closed = False
        self.compiled = 0          # shapes this thread compiled (0 s when the process already had them aside)
        self.seconds = 0.0         # seconds it spent compiling, off the critical path unless a trial waited
        self.errors: list[str] = []
        self._threads = [threading.Thread(target=self._loop, name="igla-compile-ahead", daemon=True)
                         for _ in range(threads or default_threads())]
        for th in self._threads:
            th.start()

    def offer(self, configs: Sequence[Any]) -> None:
        """Queues the configs whose shape this compiler has not seen (the first offered is compiled first)."""
        with self._cv:
            fresh = [c for c in configs if self._key(c) not in self._seen]
            for c in fresh:
                self._seen.add(self._key(c))
            self._todo[:0] = fresh
            if fresh:
                self._cv.notify()

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._todo and not self._closed:
                    self._cv.wait()
                if self._closed:
                    return
                cfg = self._todo.pop(0)
            try:
                dt = self._warm(cfg)
            except Exception as e:   # a guess that cannot compile costs nothing: the trial compiles (and reports) itself
                self.errors.append(f"{type(e).__name__}: {e}")
                continue
            with self._cv:
                self.seconds += dt
                self.compiled += dt > 0

    def close(self, timeout: float | None = None) -> None:
        with self._cv:
            self._closed = True
            self._todo.clear()
            self._cv.notify_all()
        for th in self._threads:
            th.join(timeout)
