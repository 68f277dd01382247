"""What every method the hypothesis harness replays is judged by (issue 11): one truth, one budget, one metric.

Methods are registered and replayed by `experiments.harness.methods`; this module owns the rest:

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
from typing import Any, Mapping, Sequence

import numpy as np
from scipy.stats import binomtest

from experiments.harness.trajectory import BASELINES, GRID, INF, HarnessError, Trajectory
from igla_jax.evidence.prereg import Prereg
from igla_jax.execution.replay import ReplayTable


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
    `extra_truth` (igla_jax.curves.truth.true_bpb over the truth file and the table) has a config, that value instead."""
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
