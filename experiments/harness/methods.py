"""The registry of methods the harness replays, and the runner that replays them (repeats, workers, forked jobs).

A method is a callable (table, repeat, workers, budget_s) -> Trajectory, registered by name
(`register_method`); ours and the baselines live in `experiments.harness.replay_methods`, peer
adapters in `experiments.harness.peers` (optional, `load_peers`).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Sequence

from experiments.harness.trajectory import HarnessError, Method, Trajectory
from igla_jax.execution.replay import ReplayTable


@dataclasses.dataclass(frozen=True)
class MethodSpec:
    fn: Method
    kind: str                     # "baseline" | "ours" | "peer"
    note: str = ""


METHODS: dict[str, MethodSpec] = {}


def register_method(name: str, fn: Method, *, kind: str = "peer", note: str = "") -> None:
    """Adds (or replaces) a method under `name`; kind says which side of a comparison it is on."""
    if kind not in ("baseline", "ours", "peer"):
        raise HarnessError(f"register_method({name!r}): kind {kind!r} is not baseline, ours or peer")
    METHODS[name] = MethodSpec(fn, kind, note)


def load_peers() -> str | None:
    """Registers the peer adapters of experiments.harness.peers (its PEERS name -> method, or its register(fn));
    returns a note when the module cannot be imported (a missing tool package fails its method only)."""
    try:
        import experiments.harness.peers as peers
    except ImportError as e:
        return f"peer adapters not loaded ({e}); install the peers' packages to include them"
    for name, fn in getattr(peers, "PEERS", {}).items():
        register_method(name, fn, kind="peer", note=(getattr(fn, "__doc__", None) or "").strip())
    reg = getattr(peers, "register", None)
    if callable(reg):
        reg(register_method)
    return None


# ---------------------------------------------------------------- running the methods, the plots
@dataclasses.dataclass(frozen=True)
class Run:
    """Every trajectory of a harness run, the wall seconds each replayed race took, and the peers skipped (why)."""
    trajs: dict[tuple[str, int], list[Trajectory]]
    wall_s: dict[tuple[str, int], list[float]]
    skipped: dict[str, str] = dataclasses.field(default_factory=dict)


def _run_one(table: ReplayTable, m: str, w: int, repeats: range, budget: float
             ) -> tuple[list[Trajectory], list[float], str | None]:
    """The given repeats of method m at w workers: (trajectories, wall seconds, skip reason or None).

    A peer whose very first call (repeat 0) raises (its tool is not installed, say) is skipped with
    the reason; any later failure, and any failure of ours or a baseline, propagates.
    """
    import time
    out, wall = [], []
    for r in repeats:
        t0 = time.perf_counter()
        try:
            t = METHODS[m].fn(table, r, w, budget)
        except Exception as e:  # noqa: BLE001  (only a peer's first call is forgiven)
            if METHODS[m].kind != "peer" or r:
                raise
            return [], [], f"{type(e).__name__}: {e}"
        wall.append(time.perf_counter() - t0)
        if not isinstance(t, Trajectory) or (t.method, t.repeat, t.workers) != (m, r, w):
            raise HarnessError(f"method {m!r} repeat {r} ({w} workers) returned {type(t).__name__} "
                               f"{getattr(t, 'method', '?')!r}/{getattr(t, 'repeat', '?')}/"
                               f"{getattr(t, 'workers', '?')}, not its own Trajectory")
        out.append(t)
    return out, wall, None


_FORKED: dict[str, Any] = {}   # what a forked job worker reads (set in the parent just before the pool starts)


def _forked_job(m: str, w: int, lo: int, hi: int) -> tuple[str, int, int, list[Trajectory], list[float], str | None]:
    try:
        return (m, w, lo, *_run_one(_FORKED["table"], m, w, range(lo, hi), _FORKED["budget"]))
    except Exception as e:  # noqa: BLE001  (a peer that is not installed fails every block: block 0 decides)
        if METHODS[m].kind == "peer" and lo > 0:
            return m, w, lo, [], [], f"{type(e).__name__}: {e}"
        raise


def run_methods(table: ReplayTable, methods: Sequence[str], repeats: Mapping[int, int], budget: float, *,
                progress: Callable[[str, int, list[float]], None] | None = None, jobs: int = 1) -> Run:
    """Runs every method for repeats[w] repeats (0..n-1) at each worker count w; checks what each returns.

    jobs > 1 runs blocks of repeats of every (method, worker count) in that many forked processes
    (POSIX): every repeat is seeded by its index, so the trajectories are the same as with jobs = 1,
    and they are assembled in the same order. A peer skipped at one worker count is skipped at all.
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise HarnessError(f"method {unknown[0]!r} is not registered (known: {', '.join(sorted(METHODS))})")
    pairs = [(m, w, n) for m in methods for w, n in repeats.items()]
    done: dict[tuple[str, int], tuple[list[Trajectory], list[float], str | None]] = {}
    if jobs > 1 and pairs:
        import concurrent.futures as cf
        import multiprocessing as mp
        block = 10   # repeats per job: slow peers spread over every process, fast methods stay cheap
        tasks = [(m, w, lo, min(n, lo + block)) for m, w, n in pairs for lo in range(0, n, block)]
        parts: dict[tuple[str, int], dict[int, tuple]] = {}
        _FORKED.update(table=table, budget=budget)
        try:
            with cf.ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("fork")) as pool:
                futs = [pool.submit(_forked_job, *t) for t in tasks]
                for f in cf.as_completed(futs):
                    m, w, lo, out, wall, why = f.result()
                    parts.setdefault((m, w), {})[lo] = (out, wall, why)
                    n = repeats[w]
                    if len(parts[(m, w)]) == len(range(0, n, block)):
                        got = [parts[(m, w)][k] for k in sorted(parts[(m, w)])]
                        why0 = got[0][2]
                        later = next((g[2] for g in got[1:] if g[2] is not None), None)
                        if why0 is None and later is not None:
                            raise HarnessError(f"peer {m!r} ({w} workers) failed after its first repeats: {later}")
                        done[(m, w)] = (([], [], why0) if why0 is not None else
                                        ([t for g in got for t in g[0]], [x for g in got for x in g[1]], None))
                        if progress is not None and why0 is None:
                            progress(m, w, done[(m, w)][1])
        finally:
            _FORKED.clear()
    trajs: dict[tuple[str, int], list[Trajectory]] = {}
    walls: dict[tuple[str, int], list[float]] = {}
    skipped: dict[str, str] = {}
    for m, w, n in pairs:
        if m in skipped:
            continue
        if (m, w) not in done:
            done[(m, w)] = _run_one(table, m, w, range(n), budget)
            if progress is not None and done[(m, w)][2] is None:
                progress(m, w, done[(m, w)][1])
        out, wall, why = done[(m, w)]
        if why is not None and any((m, x) in trajs for x in repeats):
            raise HarnessError(f"peer {m!r} ran at one worker count but failed at {w} workers: {why}")
        if why is not None:
            skipped[m] = why
            continue
        trajs[(m, w)], walls[(m, w)] = out, wall
    return Run(trajs, walls, skipped)
