"""Compiled programs per shape, compiled ahead of their first call and timed (issue 23).

A trial's wall time hides XLA compiling each new shape's training chunk and evaluation program.
Here each program is compiled explicitly (`jax.jit(...).lower(...).compile()`, which also reads and
writes the persistent compilation cache) once per process and signature, and the seconds spent
compiling are counted apart, so a race can say how much of it was compiling, training and
evaluating. The compiled executable is the very program `jit` would build for the same arguments,
so results are bit-identical with or without this cache (tests/test_programs.py compares a race's ledger
with `IGLA_JAX_AOT=0`, plain jit, whose compile time hides inside the first call).

`compile_seconds()` is the running total of this process; callers take differences around a call.
Thread-safe: another thread may compile the next shape while this one trains (`warm`, or `ensure`, which
the race's background compiler calls through `igla_jax.training.train.warm_programs`); a call that needs a
program being compiled elsewhere waits for it, and counts the wait as its compile seconds.
"""
from __future__ import annotations

import functools
import os
import threading
import time
from typing import Any, Callable

import jax
import numpy as np

_LOCK = threading.Lock()
_OFF = [os.environ.get("IGLA_JAX_AOT", "1") == "0"]   # IGLA_JAX_AOT=0: plain jit, untimed (the comparison run)
_PROGRAMS: dict[tuple, Any] = {}
_PENDING: dict[tuple, threading.Event] = {}
_SPENT = [0.0]


def _signature(name: str, args: tuple, kwargs: dict[str, Any]) -> tuple:
    """Arrays by shape and dtype, everything else (static arguments, the tree's static fields) by value."""
    leaves, tree = jax.tree_util.tree_flatten((args, tuple(sorted(kwargs.items()))))
    arrays = (jax.Array, np.ndarray, np.generic, jax.ShapeDtypeStruct)
    return (name, tree, tuple((tuple(x.shape), str(x.dtype)) if isinstance(x, arrays) else (type(x), x)
                              for x in leaves))


def compiled(name: str, fn: Any, *args: Any, **kwargs: Any) -> tuple[Callable[..., Any], float]:
    """(the AOT-compiled `fn`, seconds this call waited for it): `fn` (a jax.jit function) lowered with these
    arguments and compiled on first use; 0 s when this process already has the program.

    Pass the arguments as to `fn`, static ones included; call the result with the non-static ones only. The
    seconds include waiting for another thread that is compiling the same program (`warm`).
    """
    prog, waited, _ = _get(name, fn, args, kwargs)
    return prog, waited


def ensure(name: str, fn: Any, *args: Any, **kwargs: Any) -> float:
    """Makes sure this process has the program (as `compiled`); returns the seconds this call spent compiling it:
    0 when it was there, or when another thread compiled it meanwhile (the background compiler's own figure)."""
    return _get(name, fn, args, kwargs)[2]


def _get(name: str, fn: Any, args: tuple, kwargs: dict[str, Any]) -> tuple[Callable[..., Any], float, float]:
    """(program, seconds this call waited for it, seconds this call compiled)."""
    if _OFF[0]:   # jit's own program for these arguments, compiled inside the first call (not timed apart)
        return _jit_call(fn, args, kwargs), 0.0, 0.0
    key = _signature(name, args, kwargs)
    t_call, wait_started = time.perf_counter(), False
    while True:
        with _LOCK:
            prog = _PROGRAMS.get(key)
            if prog is not None:
                return prog, time.perf_counter() - t_call if wait_started else 0.0, 0.0
            wait = _PENDING.get(key)
            if wait is None:
                _PENDING[key] = threading.Event()
                break
        wait_started = True
        wait.wait()   # another thread is compiling this very program
    try:
        t0 = time.perf_counter()
        prog = fn.lower(*args, **kwargs).compile()
        dt = time.perf_counter() - t0
        with _LOCK:
            _PROGRAMS[key] = prog
            _SPENT[0] += dt
        return prog, time.perf_counter() - t_call, dt
    finally:
        with _LOCK:
            _PENDING.pop(key).set()


def _jit_call(fn: Any, args: tuple, kwargs: dict[str, Any]) -> Callable[..., Any]:
    """`fn` called the way its compiled program is: the dynamic arguments only, the static ones (configs,
    ints: anything that is not an array tree) put back in their places."""
    static = {i: a for i, a in enumerate(args) if not _is_dynamic(a)}

    def call(*dyn: Any) -> Any:
        it = iter(dyn)
        return fn(*(static[i] if i in static else next(it) for i in range(len(args))), **kwargs)
    return call


def _is_dynamic(a: Any) -> bool:
    leaves = jax.tree_util.tree_leaves(a)
    return bool(leaves) and all(isinstance(x, (jax.Array, np.ndarray, np.generic, jax.ShapeDtypeStruct)) for x in leaves)


def aot(enabled: bool) -> None:
    """Switch ahead-of-time compilation on (the default) or off (plain jit: what tests compare against)."""
    _OFF[0] = not enabled


def compile_seconds() -> float:
    """Seconds this process has spent compiling programs through `compiled` (a running total)."""
    with _LOCK:
        return _SPENT[0]


def clear() -> None:
    """Forget every compiled program (tests; the persistent cache on disk is untouched)."""
    with _LOCK:
        _PROGRAMS.clear()


def warm(name: str, fn: Any, *args: Any, **kwargs: Any) -> threading.Thread:
    """Compiles `fn` for these arguments (arrays or jax.ShapeDtypeStruct) in a daemon thread; a later `compiled`
    call with the same signature waits for it instead of compiling again."""
    th = threading.Thread(target=compiled, args=(name, fn, *args), kwargs=kwargs, daemon=True,
                          name=f"igla-compile-{name}")
    th.start()
    return th


def count(name: str) -> int:
    """How many programs named `name` this process has compiled (one per signature)."""
    with _LOCK:
        return sum(1 for k in _PROGRAMS if k[0] == name)
