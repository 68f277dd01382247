"""V4's learning-curve surrogate: its features, the table as examples, the XGBoost model, the power-law
baseline and the held-out errors the verdict judges. The pruner and the verdict: `accelerators.surrogate`.

Model (one pair of XGBoost models per rung index k = 0 .. n-2, fitted once, never in the race's step):
- features: the config (family one-hot, width, depth, log10 lr, beta, warmup, wd, dropout), then for
  each rung i <= k its validation BPB and the mean training bits of its last TAIL chunks, then the
  slope (bits per chunk) of the last SLOPE chunks of rung k and its generalisation gap (rung-k BPB
  minus that tail mean). Chunks are the trial's `RungResult.train_curve` exactly as the race sees
  it; on the table they are cut as a replay cuts them (`RecordedRun.chunk_span`), so training and
  replayed judging see the same numbers (a live trial cuts chunks per rung action, slightly apart).
- target: the remaining drop (top-rung BPB minus rung-k BPB, same seed); prediction = rung-k BPB +
  predicted drop (trees cannot extrapolate a level, a drop they can). Point model
  `reg:squarederror`; interval: a second model, `reg:quantileerror` at alpha 0.1 / 0.9 (an 80 %
  interval, widened to contain the point).
- data: every row of the recorded table (all seeds) whose every rung is finite; a diverged run has no
  top-rung BPB to learn and is left out (the race drops diverged trials itself). Past ledgers are not
  used: their search seeds differ, and their configs would cross the config split.
- split: the config ids are cut into K = round(1 / holdout_fraction) folds, deterministic from a seed;
  fold 0 is the pre-registered held-out 20 % (never by row: all seeds of a config share its fold).
  The live model is fitted on folds 1..K-1, exactly the model whose held-out MAE is judged.
Baseline: a power law bpb(s) = a + b (s/100)^-c fitted (scipy curve_fit) to the validation BPB at the
ladder steps up to the rung (100, 200, 300, ...: more points than the race has); with fewer than three
points or a failed fit, the same law fitted to the training bits, shifted through the last validation
point; failing that, the last validation BPB.
"""
from __future__ import annotations

import collections
import dataclasses
import functools
import math
import warnings
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from igla_jax.search.race_types import RungResult
from igla_jax.search.search_space import Config
from igla_jax.training.models.config import FAMILIES

if TYPE_CHECKING:
    from igla_jax.execution.replay import RecordedRun, ReplayTable

TAIL, SLOPE = 3, 6
QUANTILES = (0.1, 0.9)
XGB_PARAMS = {"n_estimators": 400, "max_depth": 3, "learning_rate": 0.03, "min_child_weight": 2.0,
              "subsample": 1.0, "tree_method": "hist", "n_jobs": 1}


class V4Error(ValueError):
    """A V4 verdict file, table or wiring is unusable; the message names it."""


# ---------------------------------------------------------------- features
def config_features(cfg: Config) -> list[float]:
    return [float(cfg.family == f) for f in FAMILIES] + [
        float(cfg.width), float(cfg.depth), math.log10(cfg.lr), cfg.beta, cfg.warmup, cfg.wd, cfg.dropout]


def _finite(xs: Sequence[float | None]) -> list[float]:
    return [float(x) for x in xs if x is not None and math.isfinite(x)]


def tail_mean(curve: Sequence[float | None], n: int = TAIL) -> float:
    x = _finite(curve)
    return float(np.mean(x[-n:])) if x else math.nan


def tail_slope(curve: Sequence[float | None], n: int = SLOPE) -> float:
    """Least-squares slope (bits per chunk) of the last n finite chunks; nan with fewer than two."""
    x = np.array(_finite(curve)[-n:])
    return float(np.polyfit(np.arange(len(x)), x, 1)[0]) if len(x) >= 2 else math.nan


def features(cfg: Config, results: Sequence[RungResult], k: int) -> list[float]:
    """The feature row of the rung-k model (module docstring); results[i] is the trial's rung i."""
    f = config_features(cfg)
    for r in results[:k + 1]:
        f += [math.nan if r.bpb is None else float(r.bpb), tail_mean(r.train_curve)]
    last = results[k]
    f += [tail_slope(last.train_curve), (math.nan if last.bpb is None else last.bpb) - tail_mean(last.train_curve)]
    return f


# ---------------------------------------------------------------- the table as examples
@dataclasses.dataclass(frozen=True)
class Example:
    """One (config, seed) run of the table: its rung results as a replayed race sees them, and the target."""
    run: "RecordedRun"
    results: tuple[RungResult, ...]
    target: float

    @property
    def config(self) -> Config:
        return self.run.config


def run_results(run: "RecordedRun", rungs: Sequence[int]) -> tuple[RungResult, ...]:
    """A recorded run's rung results (BPB and training chunks) cut exactly as the replay backend cuts them."""
    out, prev = [], -1
    for i, step in enumerate(rungs):
        j = run.ladder.index(step)
        out.append(RungResult(i, step, run.val_bpb[j], 0.0, tuple(run.chunk_span(prev, j))))
        prev = j
    return tuple(out)


def table_examples(table: "ReplayTable") -> tuple[Example, ...]:
    """Every run of the table whose BPB is finite at every rung, in table order."""
    out = []
    for key in table.order:
        r = table.runs[key]
        if any(s not in r.ladder for s in table.rungs):
            raise V4Error(f"{table.name}: run {key} has no evaluation at every rung {list(table.rungs)}")
        res = run_results(r, table.rungs)
        if all(x.bpb is not None and math.isfinite(x.bpb) for x in res):
            out.append(Example(r, res, float(res[-1].bpb)))
    return tuple(out)


def config_folds(config_ids: Sequence[str], holdout_fraction: float, seed: int) -> dict[str, int]:
    """Fold of each config id: K = round(1 / holdout_fraction) folds of a seeded permutation; fold 0 is held out."""
    k = max(2, round(1.0 / holdout_fraction))
    ids = sorted(set(config_ids))
    perm = np.random.default_rng([int(seed), 0x5A4]).permutation(len(ids))
    return {ids[p]: i % k for i, p in enumerate(perm)}


# ---------------------------------------------------------------- the model
@dataclasses.dataclass(frozen=True, eq=False)
class SurrogateModel:
    """Per rung index k (0 .. n-2): a point booster and a quantile booster predicting the drop to the top rung."""
    rungs: tuple[int, ...]
    point: tuple[Any, ...]
    band: tuple[Any, ...]
    configs: frozenset[str]     # config ids it was fitted on

    @classmethod
    def fit(cls, examples: Sequence[Example], rungs: Sequence[int], *, seed: int, ks: Sequence[int] | None = None,
            params: Mapping[str, Any] | None = None) -> "SurrogateModel":
        """Fits the rung-k pair for every k in ks (default 0 .. n-2; the pruner needs 1 .. n-2 only)."""
        try:
            import xgboost as xgb
        except ImportError as e:
            raise V4Error(f"the V4 surrogate needs xgboost ({e}); install it or run with --surrogate off") from None
        if len(examples) < 4:
            raise V4Error(f"SurrogateModel.fit: {len(examples)} finite runs; need at least 4")
        point: list[Any] = [None] * (len(rungs) - 1)
        band: list[Any] = [None] * (len(rungs) - 1)
        for k in (range(len(rungs) - 1) if ks is None else ks):
            x = np.array([features(e.config, e.results, k) for e in examples], float)
            y = np.array([e.target - e.results[k].bpb for e in examples], float)
            kw = {**XGB_PARAMS, **(params or {}), "random_state": int(seed)}
            point[k] = xgb.XGBRegressor(objective="reg:squarederror", **kw).fit(x, y).get_booster()
            band[k] = xgb.XGBRegressor(objective="reg:quantileerror", quantile_alpha=np.array(QUANTILES),
                                       **kw).fit(x, y).get_booster()
        return cls(tuple(int(r) for r in rungs), tuple(point), tuple(band),
                   frozenset(e.config.config_id for e in examples))

    @functools.cached_property
    def _predicted(self) -> collections.OrderedDict:
        """The latest predictions by what their features read (config, each rung's BPB and chunks): the boosters
        are fixed once fitted, so a replay that reaches the same (config, rung) again gets the same numbers."""
        return collections.OrderedDict()

    def predict(self, cfg: Config, results: Sequence[RungResult]) -> tuple[float, float, float]:
        """(prediction, low, high) of the top-rung BPB from the rungs reached so far (0 < len < n)."""
        k = len(results) - 1
        if not 0 <= k < len(self.point) or self.point[k] is None:
            raise V4Error(f"surrogate: no model fitted for rung {k + 1} (of rungs {list(self.rungs)})")
        key = (cfg, tuple((r.bpb, tuple(r.train_curve)) for r in results))
        memo = self._predicted
        if key in memo:
            memo.move_to_end(key)
            return memo[key]
        memo[key] = out = self._predict(cfg, results, k)
        if len(memo) > 1 << 14:
            memo.popitem(last=False)
        return out

    def _predict(self, cfg: Config, results: Sequence[RungResult], k: int) -> tuple[float, float, float]:
        x = np.array([features(cfg, results, k)], np.float32)
        last = float(results[k].bpb)
        p = last + float(self.point[k].inplace_predict(x).reshape(-1)[0])
        lo, hi = sorted(float(v) for v in self.band[k].inplace_predict(x).reshape(-1))
        return p, min(last + lo, p), max(last + hi, p)


# ---------------------------------------------------------------- the power-law baseline
def power_law(s: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
    return a + b * np.power(np.asarray(s, float) / 100.0, -c)


def fit_power_law(steps: Sequence[float], values: Sequence[float]) -> tuple[float, float, float] | None:
    """(a, b, c) of a + b (s/100)^-c by scipy curve_fit (bounded, deterministic); None if it fails."""
    from scipy.optimize import OptimizeWarning, curve_fit
    s, y = np.asarray(steps, float), np.asarray(values, float)
    ok = np.isfinite(s) & np.isfinite(y)
    s, y = s[ok], y[ok]
    if len(s) < 3:
        return None
    p0 = (max(0.0, y[-1] - 0.3), max(1e-3, y[0] - y[-1] + 0.3), 0.5)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)
            p, _ = curve_fit(power_law, s, y, p0=p0, bounds=([0.0, 0.0, 0.01], [8.0, 20.0, 3.0]), maxfev=20000)
    except (RuntimeError, ValueError):
        return None
    return (float(p[0]), float(p[1]), float(p[2])) if np.all(np.isfinite(p)) else None


def chunk_midpoints(ladder: Sequence[int], upto: int, chunk: int) -> np.ndarray:
    """Mid-step of every recorded chunk up to ladder step `upto` (the recorder restarts chunks at each ladder step)."""
    mids, prev = [], 0
    for b in ladder:
        if b > upto:
            break
        for s in range(prev, b, chunk):
            mids.append((s + min(s + chunk, b)) / 2.0)
        prev = b
    return np.array(mids, float)


def power_law_predict(run: "RecordedRun", step: int, target_step: int) -> float:
    """The baseline's top-rung prediction for a recorded run from its curve up to `step` (module docstring)."""
    j = run.ladder.index(step)
    s, y = np.array(run.ladder[:j + 1], float), np.array([np.nan if v is None else v for v in run.val_bpb[:j + 1]])
    p = fit_power_law(s, y)
    if p is not None:
        return float(power_law(target_step, *p))
    mids = chunk_midpoints(run.ladder, step, run.chunk)
    bits = np.array([np.nan if b is None else b for b in run.train_bits[:len(mids)]], float)
    p = fit_power_law(mids[:len(bits)], bits)
    if p is not None:
        return float(y[-1] + power_law(target_step, *p) - power_law(s[-1], *p))
    return float(y[-1])


@dataclasses.dataclass(frozen=True)
class RungErrors:
    """Held-out errors of the top-rung prediction made from rung k: surrogate, power law, interval coverage."""
    rung: int
    n: int
    surrogate_mae: float
    power_law_mae: float
    coverage: float


def holdout_errors(model: SurrogateModel, examples: Sequence[Example]) -> tuple[RungErrors, ...]:
    """MAE per rung index of the surrogate and of the power law on `examples` (the held-out configs' runs)."""
    if not examples:
        raise V4Error("holdout_errors: no held-out runs")
    out = []
    for k in range(len(model.rungs) - 1):
        s_err, p_err, cov = [], [], []
        for e in examples:
            p, lo, hi = model.predict(e.config, e.results[:k + 1])
            s_err.append(abs(p - e.target))
            cov.append(lo <= e.target <= hi)
            p_err.append(abs(power_law_predict(e.run, model.rungs[k], model.rungs[-1]) - e.target))
        out.append(RungErrors(k, len(examples), float(np.mean(s_err)), float(np.mean(p_err)), float(np.mean(cov))))
    return tuple(out)
