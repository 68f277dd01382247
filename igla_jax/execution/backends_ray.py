"""The `ray` backend: every compute action (Train, Confirm, Reproduce) runs as one Ray task.

`ray.init()` starts a local cluster with num_cpus = workers, unless Ray is already initialised in
this process or `address` names an existing cluster (`--ray-address`: e.g. `auto`, or
`ray://head:10001`). Each task takes one CPU, trains from its action's checkpoint and writes the
next one under --out/ckpt, so --out must be on a filesystem every worker can reach; the ledger is
written only by the driver. A task whose worker process dies (kill -9, a lost node) is retried by
Ray (`max_retries`) from the same checkpoint: it costs only that action, and nothing is written
twice because only the driver writes, once, when the result comes back. Workers import igla_jax
(installed on every node) and JAX once per process; `ActionRunner.compile_cache` points them at
the driver's persistent XLA cache. `import ray` happens only here, when the backend is built.

Test hook: IGLA_RAY_TEST_KILL="<action_id>:<marker file>" in the driver's environment makes the
task of that action SIGKILL its own worker process at its first progress call (mid-training), on
the first attempt only: the marker file, written just before, records that it happened.
"""
from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path
from typing import Any, Callable

from igla_jax.execution.backends import Finished, Result
from igla_jax.execution.runner import ActionRunner, BackendError, enable_compile_cache

KILL_ENV = "IGLA_RAY_TEST_KILL"
INSTALL = "pip install -e '.[ray]'"
_CACHE_SET: set[str] = set()


def require_ray() -> Any:
    """The ray module, or a BackendError that says how to install it."""
    try:
        import ray
    except ImportError:
        raise BackendError(f"--executor ray needs Ray, which is not installed here: {INSTALL}") from None
    return ray


def _kill_hook() -> tuple[int, str] | None:
    text = os.environ.get(KILL_ENV)
    if not text:
        return None
    aid, _, marker = text.partition(":")
    if not aid.strip().isdigit() or not marker:
        raise BackendError(f"{KILL_ENV}={text!r}: expected '<action_id>:<marker file>'")
    return int(aid), marker


def run_action(runner: ActionRunner, action: Any, kill_marker: str | None = None) -> dict[str, Any]:
    """Runs in a Ray worker: trains one action and returns its Result with the worker's timing."""
    if runner.compile_cache and runner.compile_cache not in _CACHE_SET:
        enable_compile_cache(runner.compile_cache)
        _CACHE_SET.add(runner.compile_cache)
    progress = None
    if kill_marker is not None and not os.path.exists(kill_marker):
        def progress(step: int, to_step: int, bits: float) -> None:
            Path(kill_marker).write_text(f"pid {os.getpid()} killed itself in action {action.action_id}\n")
            os.kill(os.getpid(), signal.SIGKILL)
    start = time.time()
    r = runner.run(action, progress)
    res = Result(val_bpb=float(r.val_bpb), status=r.status, step=int(r.step),
                 params=None if getattr(r, "params", None) is None else int(r.params),
                 tokens_per_s=float(r.tokens_per_s), wall_s=float(r.wall_s), test_bpb=getattr(r, "test_bpb", None),
                 train_curve=tuple(getattr(r, "train_curve", ()) or ()), compile_s=getattr(r, "compile_s", None),
                 train_s=getattr(r, "train_s", None), eval_s=getattr(r, "eval_s", None),
                 init_s=getattr(r, "init_s", None))
    return {"result": res, "start": start, "finish": time.time(), "pid": os.getpid()}


class RayBackend:
    """Compute actions as Ray tasks (one CPU each); results polled as they finish, ties by the lower action id."""

    def __init__(self, runner: ActionRunner, *, workers: int, address: str | None = None, max_retries: int = 3,
                 clock: Callable[[], float] = time.monotonic):
        ray = require_ray()
        self._ray, self.runner, self.workers, self.clock = ray, runner, workers, clock
        self.max_retries = max_retries
        self._owns = False
        if not ray.is_initialized():
            kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING}
            try:
                if address:
                    ray.init(address=address, **kw)
                else:
                    ray.init(num_cpus=workers, **kw)
            except Exception as e:  # noqa: BLE001 - Ray raises several types for an unreachable cluster
                where = f"--ray-address {address!r}" if address else f"a local Ray cluster with {workers} CPUs"
                raise BackendError(f"cannot start or join {where}: {e}") from None
            self._owns = True
        self._task = ray.remote(num_cpus=1, max_retries=max_retries)(run_action)
        self._hook = _kill_hook()
        self._refs: dict[Any, tuple[Any, float]] = {}
        self._t0, self._wall0 = clock(), time.time()

    @property
    def now(self) -> float:
        return self.clock() - self._t0

    def submit(self, action: Any, now: float) -> None:
        marker = self._hook[1] if self._hook is not None and self._hook[0] == action.action_id else None
        self._refs[self._task.remote(self.runner, action, marker)] = (action, float(now))

    def in_flight(self) -> int:
        return len(self._refs)

    def poll(self, timeout: float | None = None) -> Finished | None:
        """The finished action with the lowest id; None when nothing is in flight or none finished within `timeout`."""
        if not self._refs:
            return None
        ray = self._ray
        refs = list(self._refs)
        ready, _ = ray.wait(refs, num_returns=1, timeout=timeout)
        if not ready:
            return None
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        ref = min(ready, key=lambda r: self._refs[r][0].action_id)
        a, issued = self._refs.pop(ref)
        try:
            out = ray.get(ref)
        except ray.exceptions.RayTaskError as e:  # the trainer raised: the original error, as in-process
            cause = getattr(e, "cause", None)
            if isinstance(cause, Exception):
                raise cause from e
            raise
        except ray.exceptions.RayError as e:
            raise BackendError(f"action {a.action_id} was lost on Ray after {self.max_retries} retries ({e}); "
                               "its checkpoint is intact: continue with --resume") from None
        return Finished(a, issued, out["start"] - self._wall0, out["finish"] - self._wall0, out["pid"], out["result"],
                        {"pid": out["pid"]})

    def cancel(self, action_id: int) -> bool:
        for ref, (a, _) in list(self._refs.items()):
            if a.action_id == action_id:
                del self._refs[ref]
                try:
                    self._ray.cancel(ref, force=True)
                except Exception:  # noqa: BLE001 - it finished meanwhile: nothing to stop
                    pass
                return True
        return False

    def close(self) -> None:
        """Cancels what is in flight; shuts down a cluster this backend started."""
        for ref in list(self._refs):
            try:
                self._ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001
                pass
        self._refs.clear()
        if self._owns:
            self._ray.shutdown()
