"""The hypothesis harness (issue 11): every search method replayed on one curve table, one simulated budget, one metric.

A method is a callable (table, repeat, workers, budget_s) -> Trajectory, registered by name
(`register_method`); ours and the baselines live in `experiments.replay_methods`, peer adapters
in `experiments.peers` (optional). The harness owns everything they are judged by:

- truth: a config's true top-rung BPB is the mean over the table's seeds that reached the top
  rung (diverged on every seed = +inf); the table's best is the lowest over its primary-seed
  configs, both strata (a method confined to one stratum can miss it: that is measured, not hidden).
- budget: one common simulated budget for every method and worker count: the uniform grid's time
  to train every uniform-stratum config to the top rung on 1 worker, compile once per shape
  (`budget_s`). More workers never make the grid need more (list scheduling), so the grid always
  finishes; completions after the budget are ignored.
- metric (pre-registered, prereg.harness_regret_tol): the incumbent at time t is the finished config
  with the lowest observed top-rung BPB; regret = its true BPB - the table's best; time-to-tolerance
  = the first time regret <= tol (never: +inf, censored).
- intervals (prereg.bootstrap_level, percentile): each draw resamples the repeats (with replacement,
  the same indices for every method at a worker count, so speed-ups are paired) and the table's
  configs (with replacement: a config not drawn does not exist in that draw; the best is recomputed
  over the drawn ones and a method's completions of undrawn configs are dropped). Methods are not
  re-run per draw (one vectorised pass per trajectory). A draw without the best config has an easier
  target, so the intervals are wide and lean towards reaching it: they show table dependence.
- paired test (pre-registered): one-sided exact sign test over repeats (a win: the method's
  time-to-tolerance is lower than the baseline's in the same repeat; ties and double censoring
  dropped) at alpha / bonferroni_n; "faster" also needs the speed-up (baseline's median time over
  the method's) above 1 and the lower end of its interval above 1 (a draw where both medians are
  never counts as 1: no speed-up), so a method that mostly never gets there is not called faster.
- H(1): median first promotion past rung 1 <= harness_first_promotion_ratio_max x the uniform grid's
  (interval: repeats resampled). H(2): of the configs a cheap signal promoted (pooled over repeats), the
  share outside the table's top cheap_promotion_top_fraction by true BPB must not exceed cheap_promotion_fail_max.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from scipy.stats import binomtest

from igla_jax.prereg import Prereg
from igla_jax.replay import ReplayTable

INF = math.inf
BASELINES = ("uniform_grid", "random_full", "asha")
GRID = "uniform_grid"


class HarnessError(ValueError):
    """A method, trajectory or table the harness cannot judge; the message names it."""


@dataclasses.dataclass(frozen=True)
class Trajectory:
    method: str
    repeat: int                   # the repeat index (drives the method's seed)
    workers: int
    completions: tuple[tuple[float, str, float], ...]  # (sim_time_s, config_id, observed top-rung BPB) in time order, each time a config finishes the top rung
    first_promotion_s: float | None                    # simulated time of the first promotion past rung 1 (None: none)
    cheap_promotions: tuple[str, ...] = ()             # config ids a cheap signal (proxy/surrogate) promoted, for H(2)
    sim_end_s: float = 0.0


Method = Callable[[ReplayTable, int, int, float], Trajectory]


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
    """Registers the peer adapters of experiments.peers (its PEERS name -> method, or its register(fn));
    returns a note when the module cannot be imported (a missing tool package fails its method only)."""
    try:
        import experiments.peers as peers
    except ImportError as e:
        return f"peer adapters not loaded ({e}); install the peers' packages to include them"
    for name, fn in getattr(peers, "PEERS", {}).items():
        register_method(name, fn, kind="peer", note=(getattr(fn, "__doc__", None) or "").strip())
    reg = getattr(peers, "register", None)
    if callable(reg):
        reg(register_method)
    return None


# ---------------------------------------------------------------- the table's truth and the budget
@dataclasses.dataclass(frozen=True)
class Truth:
    """Every primary-seed config of the table: id, stratum, true top-rung BPB (mean over its seeds)."""
    ids: tuple[str, ...]
    strata: tuple[str, ...]
    true_bpb: np.ndarray          # (C,), +inf when the config diverged on every seed
    index: Mapping[str, int]

    @property
    def best(self) -> float:
        return float(self.true_bpb.min())


def table_truth(table: ReplayTable, extra_truth: Mapping[str, float] | None = None) -> Truth:
    """The table's truth: each primary-seed config's mean top-rung BPB over the seeds the table holds; where
    `extra_truth` (igla_jax.truth.true_bpb over the truth file and the table) has a config, that value instead."""
    top = table.rungs[-1]
    vals: dict[str, list[float]] = {}
    ids, strata = [], []
    for cid, seed in table.order:
        r = table.runs[(cid, seed)]
        if r.seed_role == "primary":
            ids.append(cid)
            strata.append(r.stratum)
        b = r.val_bpb[r.ladder.index(top)] if top in r.ladder else None
        if b is not None:
            vals.setdefault(cid, []).append(float(b))
    if not ids:
        raise HarnessError(f"{table.name}: no primary-seed run recorded yet; nothing to replay")
    extra_truth = extra_truth or {}
    true = np.array([float(extra_truth[c]) if c in extra_truth else float(np.mean(vals[c])) if c in vals else INF
                     for c in ids])
    return Truth(tuple(ids), tuple(strata), true, {c: i for i, c in enumerate(ids)})


def full_cost_s(table: ReplayTable, cid: str) -> float:
    """Seconds to train a config from scratch to the top rung and evaluate there once (compile excluded)."""
    r = table.runs[(cid, table.primary_seed)]
    j = r.ladder.index(table.rungs[-1])
    return r.seg_cum[-1] if r.val_bpb[j] is None else r.seg_cum[j] + r.eval_s[j]


def budget_s(table: ReplayTable, truth: Truth) -> float:
    """The common budget: the uniform grid on 1 worker, every uniform config to the top rung, compile once per shape."""
    uni = [c for c, s in zip(truth.ids, truth.strata) if s == "uniform"]
    if not uni:
        raise HarnessError(f"{table.name}: no uniform-stratum config yet; the budget is the uniform grid's time")
    shapes = {table.runs[(c, table.primary_seed)].shape for c in uni}
    return float(sum(full_cost_s(table, c) for c in uni) + sum(table.compile_of(s) for s in shapes))


# ---------------------------------------------------------------- the metric
@dataclasses.dataclass(frozen=True)
class Arrays:
    """A trajectory's completions within the budget as arrays: time, config index, observed BPB."""
    t: np.ndarray
    cidx: np.ndarray
    obs: np.ndarray


def arrays(traj: Trajectory, truth: Truth, budget: float) -> Arrays:
    t, c, o = [], [], []
    last = -INF
    for time_s, cid, bpb in traj.completions:
        where = f"{traj.method} repeat {traj.repeat} ({traj.workers} workers)"
        if cid not in truth.index:
            raise HarnessError(f"{where}: completed config {cid}, which is not a primary-seed config of the table")
        if not (math.isfinite(bpb) and math.isfinite(time_s)) or time_s < last:
            raise HarnessError(f"{where}: completion ({time_s}, {cid}, {bpb}) is not finite or not in time order")
        last = time_s
        if time_s <= budget * (1 + 1e-9):
            t.append(time_s), c.append(truth.index[cid]), o.append(bpb)
    return Arrays(np.array(t, float), np.array(c, int), np.array(o, float))


def first_hits(a: Arrays, true_bpb: np.ndarray, present: np.ndarray, best: np.ndarray, tol: float) -> np.ndarray:
    """(B,) first time the regret is <= tol in each of B worlds (present: (B, C) configs that exist; best: (B,))."""
    n_b, k = present.shape[0], len(a.t)
    if k == 0:
        return np.full(n_b, INF)
    o = np.where(present[:, a.cidx], a.obs[None, :], INF)
    before = np.concatenate([np.full((n_b, 1), INF), np.minimum.accumulate(o, axis=1)[:, :-1]], axis=1)
    last = np.maximum.accumulate(np.where(o < before, np.arange(k), -1), axis=1)  # the incumbent's position
    tv = np.append(true_bpb[a.cidx], INF)                                           # -1: no incumbent yet
    hit = tv[last] - best[:, None] <= tol + 1e-12
    return np.where(hit.any(axis=1), a.t[np.argmax(hit, axis=1)], INF)


def time_to_tol(traj: Trajectory, truth: Truth, tol: float, budget: float) -> float:
    a = arrays(traj, truth, budget)
    return float(first_hits(a, truth.true_bpb, np.ones((1, len(truth.ids)), bool), np.array([truth.best]), tol)[0])


def regret_curve(traj: Trajectory, truth: Truth, times: np.ndarray, budget: float) -> np.ndarray:
    """Regret of the incumbent at each time (+inf before the first completion)."""
    a = arrays(traj, truth, budget)
    reg, best_obs, cur = [], INF, INF
    for c, o in zip(a.cidx, a.obs):
        if o < best_obs:
            best_obs, cur = o, truth.true_bpb[c] - truth.best
        reg.append(cur)
    k = np.searchsorted(a.t, times, side="right") - 1
    return np.where(k >= 0, np.append(np.array(reg, float), INF)[k], INF)


# ---------------------------------------------------------------- statistics
def sign_test(method_t: Sequence[float], base_t: Sequence[float]) -> dict[str, Any]:
    """One-sided exact sign test over paired repeats: H1 the method reaches the tolerance sooner."""
    m, b = np.asarray(method_t, float), np.asarray(base_t, float)
    wins, losses = int(np.sum(m < b)), int(np.sum(m > b))
    p = float(binomtest(wins, wins + losses, 0.5, alternative="greater").pvalue) if wins + losses else 1.0
    return {"wins": wins, "losses": losses, "ties": int(len(m) - wins - losses), "p": p}


def ratio(num: np.ndarray | float, den: np.ndarray | float) -> np.ndarray:
    """num / den with inf/inf = nan (undefined), inf/x = inf, x/inf = 0."""
    num, den = np.asarray(num, float), np.asarray(den, float)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = num / den
    return np.where(np.isinf(num) & np.isinf(den), np.nan, out)


def interval(x: np.ndarray, level: float) -> list[float]:
    """Percentile interval of bootstrap values (order statistics: inf stays inf; nan draws left out)."""
    x = np.asarray(x, float)
    x = x[~np.isnan(x)]
    if x.size == 0:
        return [math.nan, math.nan]
    q = (1 - level) / 2
    return [float(v) for v in np.quantile(x, [q, 1 - q], method="inverted_cdf")]


def draw_worlds(truth: Truth, draws: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(present (B, C), best (B,)): the table's configs resampled with replacement in each draw."""
    rng = np.random.default_rng([seed, 11])
    c = len(truth.ids)
    present = np.zeros((draws, c), bool)
    present[np.arange(draws)[:, None], rng.integers(c, size=(draws, c))] = True
    return present, np.where(present, truth.true_bpb[None, :], INF).min(axis=1)


def top_set(true_bpb: np.ndarray, frac: float) -> np.ndarray:
    """Boolean mask of the ceil(frac * n) lowest true BPBs (ties at the threshold included)."""
    k = max(1, math.ceil(frac * len(true_bpb) - 1e-9))
    return true_bpb <= np.sort(true_bpb)[k - 1]


def cheap_failure(trajs: Sequence[Trajectory], truth: Truth, frac: float) -> tuple[int, int]:
    """(promoted, outside the top set): H(2)'s counts pooled over trajectories."""
    top = top_set(truth.true_bpb, frac)
    idx = [truth.index[c] for t in trajs for c in t.cheap_promotions if c in truth.index]
    return len(idx), int(sum(not top[i] for i in idx))


def _fmt(x: float) -> float | str | None:
    """JSON-safe number: +inf as "inf", nan as null."""
    return None if isinstance(x, float) and math.isnan(x) else ("inf" if x == INF else float(x))


# ---------------------------------------------------------------- judging a set of trajectories
def evaluate(trajs: Mapping[tuple[str, int], Sequence[Trajectory]], truth: Truth, budget: float, prereg: Prereg, *,
             kinds: Mapping[str, str] | None = None, draws: int = 1000, seed: int = 0) -> list[dict[str, Any]]:
    """One result row per (method, workers): time-to-tolerance, never-reached share, speed-ups, sign tests, H(1), H(2).

    trajs: (method, workers) -> its repeats (repeat r pairs with repeat r of every other method at
    those workers; every method at a worker count needs the same repeats). kinds: method -> kind.
    """
    kinds = kinds or {}
    tol, level, alpha = prereg.harness_regret_tol, prereg.bootstrap_level, prereg.alpha_per_arm
    present, best = draw_worlds(truth, draws, seed)
    everything = np.ones((1, len(truth.ids)), bool)
    rng = np.random.default_rng([seed, 12])
    by_w: dict[int, list[str]] = {}
    for (m, w) in trajs:
        by_w.setdefault(w, []).append(m)
    rows = []
    for w in sorted(by_w):
        reps = {m: [t.repeat for t in trajs[(m, w)]] for m in by_w[w]}
        r0 = next(iter(reps.values()))
        if any(v != r0 for v in reps.values()):
            raise HarnessError(f"{w} workers: methods ran different repeats ({reps}); pairing needs the same ones")
        pick = rng.integers(len(r0), size=(draws, len(r0)))
        point, boot, first = {}, {}, {}
        for m in by_w[w]:
            arr = [arrays(t, truth, budget) for t in trajs[(m, w)]]
            point[m] = np.array([first_hits(a, truth.true_bpb, everything, np.array([truth.best]), tol)[0] for a in arr])
            hits = np.stack([first_hits(a, truth.true_bpb, present, best, tol) for a in arr], axis=1)  # (B, R)
            boot[m] = np.take_along_axis(hits, pick, axis=1)
            first[m] = np.array([INF if t.first_promotion_s is None else t.first_promotion_s for t in trajs[(m, w)]])
        med = {m: np.median(boot[m], axis=1) for m in boot}
        for m in by_w[w]:
            row: dict[str, Any] = {"method": m, "kind": kinds.get(m, "peer"), "workers": w, "repeats": len(r0)}
            row["time_to_tol_s"] = {"median": _fmt(float(np.median(point[m]))),
                                    "interval": [_fmt(v) for v in interval(med[m], level)]}
            row["never_fraction"] = {"value": float(np.mean(np.isinf(point[m]))),
                                     "interval": interval(np.mean(np.isinf(boot[m]), axis=1), level)}
            row["speedup"] = {}
            for b in BASELINES:
                if b == m or b not in point:
                    continue
                sp = float(ratio(np.median(point[b]), np.median(point[m])))
                iv = interval(np.nan_to_num(ratio(med[b], med[m]), nan=1.0, posinf=INF), level)  # both never: 1
                st = sign_test(point[m], point[b])
                row["speedup"][b] = {"value": _fmt(sp), "interval": [_fmt(v) for v in iv], "sign_test": st,
                                     "level": alpha, "faster": bool(st["p"] < alpha and sp > 1 and iv[0] > 1)}
            row["h1"] = _h1(first, m, pick, prereg)
            n, bad = cheap_failure(trajs[(m, w)], truth, prereg.cheap_promotion_top_fraction)
            row["h2"] = {"promoted": n, "outside_top": bad, "fail_fraction": bad / n if n else None,
                         "falsified": (bad / n > prereg.cheap_promotion_fail_max) if n else None,
                         "max": prereg.cheap_promotion_fail_max, "top_fraction": prereg.cheap_promotion_top_fraction}
            row["sim_end_s"] = {"median": float(np.median([t.sim_end_s for t in trajs[(m, w)]]))}
            rows.append(row)
    return rows


def _h1(first: Mapping[str, np.ndarray], m: str, pick: np.ndarray, prereg: Prereg) -> dict[str, Any]:
    """H(1) for method m: its median first promotion over the uniform grid's (paired repeat resampling)."""
    mx = prereg.harness_first_promotion_ratio_max
    med = float(np.median(first[m]))
    if GRID not in first:
        return {"median_s": _fmt(med), "ratio_to_grid": None, "interval": None, "holds": None, "max": mx}
    r = float(ratio(med, np.median(first[GRID])))
    iv = interval(ratio(np.median(first[m][pick], axis=1), np.median(first[GRID][pick], axis=1)), prereg.bootstrap_level)
    return {"median_s": _fmt(med), "ratio_to_grid": _fmt(r), "interval": [_fmt(v) for v in iv],
            "holds": bool(r <= mx) if not math.isnan(r) else None, "max": mx}


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


def plot_regret(run: Run, truth: Truth, budget: float, prereg: Prereg, path: Any, workers: int, *,
                title: str = "") -> None:
    """Anytime regret of every method at `workers`: median over repeats and the 25-75 % band (log time)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    keys = [k for k in run.trajs if k[1] == workers]
    ends = [max([c[0] for t in run.trajs[k] for c in t.completions] + [t.sim_end_s for t in run.trajs[k]])
            for k in keys]
    hi = min(budget, max(ends + [1.0]))
    times = np.geomspace(max(hi * 1e-4, 1.0), hi, 400)
    floor = 1e-3
    fig, ax = plt.subplots(figsize=(8, 5))
    colors = plt.get_cmap("tab20").colors   # 20 distinct colours: a method never shares one
    for i, (m, _w) in enumerate(keys):
        curves = np.stack([regret_curve(t, truth, times, budget) for t in run.trajs[(m, workers)]])
        q = np.quantile(np.maximum(curves, floor), [0.25, 0.5, 0.75], axis=0, method="inverted_cdf")
        q = np.where(np.isinf(q), np.nan, q)
        kind = METHODS[m].kind if m in METHODS else "peer"
        line, = ax.plot(times / 3600, q[1], lw=2.2 if kind == "ours" else 1.4, color=colors[(2 * i) % 20 + (i // 10) % 2],
                        ls="-" if kind == "ours" else ("--" if kind == "baseline" else ":"), label=m)
        ax.fill_between(times / 3600, q[0], q[2], color=line.get_color(), alpha=0.15, lw=0)
    ax.axhline(prereg.harness_regret_tol, color="black", ls="--", lw=0.8, label=f"tolerance {prereg.harness_regret_tol}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("simulated time (hours)")
    ax.set_ylabel(f"regret (BPB; 0 drawn at {floor})")
    ax.set_title(title or f"anytime regret, {workers} worker(s): median over repeats, 25-75 % band", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
