"""V4: an XGBoost learning-curve surrogate that vetoes promotions, with its falsifiers and verdict file.

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

Pruner: acts on a promotion from rung index >= 1 (never the top): it predicts the trial's top-rung BPB,
records it, and vetoes when the prediction ranks among the worst surrogate_prune_fraction of its
rung's predictions so far, once there are surrogate_min_predictions, never for the trial best at its
rung. Disabled verdict: it neither predicts nor prunes (no model is needed, nor xgboost).
Falsifiers (`surrogate_verdict`): held-out MAE at every pruning rung <= surrogate_mae_max, and on
replays the share of pruned configs in the best cheap_promotion_top_fraction of the sampled (uniform) stratum <=
surrogate_top_pruned_max.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from igla_jax.interfaces import Judgement, PruneDecision
from igla_jax.models.config import FAMILIES
from igla_jax.prereg import Prereg, repo_root
from igla_jax.race_types import RungResult
from igla_jax.search_space import Config
from igla_jax.verdict import Verdict, VerdictFileError, read_verdict_file, write_verdict_file

if TYPE_CHECKING:
    from igla_jax.race import RaceState, Trial
    from igla_jax.replay import RecordedRun, ReplayTable

VERDICT_FILE = "v4_verdict.json"
VERDICT_KIND = "igla-v4-verdict"
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

    def predict(self, cfg: Config, results: Sequence[RungResult]) -> tuple[float, float, float]:
        """(prediction, low, high) of the top-rung BPB from the rungs reached so far (0 < len < n)."""
        k = len(results) - 1
        if not 0 <= k < len(self.point) or self.point[k] is None:
            raise V4Error(f"surrogate: no model fitted for rung {k + 1} (of rungs {list(self.rungs)})")
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


# ---------------------------------------------------------------- the pruner
@dataclasses.dataclass(frozen=True)
class Prediction:
    """One prediction the pruner made: at rung index `rung`, for a trial, with its interval and decision."""
    rung: int
    trial_id: str
    value: float
    low: float
    high: float
    pruned: bool


@dataclasses.dataclass(frozen=True)
class SurrogateState:
    """Pruner state: every prediction made so far, in order."""
    predictions: tuple[Prediction, ...] = ()

    def at(self, rung: int) -> tuple[float, ...]:
        return tuple(p.value for p in self.predictions if p.rung == rung)


def rank_rule(others: Sequence[float], value: float, fraction: float, min_n: int) -> tuple[bool, int, int, int]:
    """(veto, rank, n, vetoed) of `value` among n = len(others) + 1 predictions (lower = better).

    Rank = 1 + the predictions strictly better (ties favour the trial); the worst
    floor(fraction * n) ranks are vetoed, and nothing is below min_n predictions.
    """
    n = len(others) + 1
    rank = 1 + sum(1 for o in others if o < value)
    worst = math.floor(fraction * n + 1e-9)
    return (n >= min_n and rank > n - worst), rank, n, worst


@dataclasses.dataclass(frozen=True, eq=False)
class SurrogatePruner:
    """V4 pruner (module docstring): vetoes promotions whose predicted top-rung BPB ranks among the worst.

    Args:
      models: fitted SurrogateModels; `route` maps a config id to the index of the one to use (the
        study's cross-fitting: each config judged by the model that never saw it), default model 0.
      prune_fraction, min_predictions: the pre-registered surrogate_prune_fraction, surrogate_min_predictions.
      verdict: V4's verdict; disabled = never predicts, never prunes.
    """
    models: tuple[SurrogateModel, ...]
    prune_fraction: float
    min_predictions: int
    verdict: Verdict
    route: tuple[tuple[str, int], ...] = ()
    name: str = "surrogate"

    def __post_init__(self) -> None:
        if self.verdict.enabled and not self.models:
            raise V4Error("SurrogatePruner: an enabled verdict needs a fitted model")
        if len({m.rungs for m in self.models}) > 1:
            raise V4Error("SurrogatePruner: models fitted for different rungs")

    @classmethod
    def from_prereg(cls, prereg: Prereg, verdict: Verdict, models: Sequence[SurrogateModel] = (),
                    route: Mapping[str, int] | None = None) -> "SurrogatePruner":
        return cls(tuple(models), prereg.surrogate_prune_fraction, prereg.surrogate_min_predictions, verdict,
                   tuple(sorted((route or {}).items())))

    @functools.cached_property
    def _route(self) -> dict[str, int]:
        return dict(self.route)

    def report(self) -> str:
        how = "vetoes promotions by predicted top-rung BPB" if self.verdict.enabled else "never prunes (V4 disabled)"
        return f"{self.name}: {how}; V4 {self.verdict.line()}"

    def init(self, seed: int) -> SurrogateState:
        return SurrogateState()

    def judge(self, state: SurrogateState, race: "RaceState", trial: "Trial") -> PruneDecision:
        k, n_rungs = len(trial.results) - 1, len(race.config.rungs)
        if not self.verdict.enabled:
            return PruneDecision(state, Judgement(False, math.nan, "surrogate: V4 disabled, not consulted"), self.verdict)
        if k < 1 or k >= n_rungs - 1:
            return PruneDecision(state, Judgement(False, math.nan, f"surrogate: acts from rung 2, not at rung {k + 1}"),
                                 self.verdict)
        model = self.models[self._route.get(trial.config.config_id, 0)]
        if tuple(race.config.rungs) != model.rungs:
            raise V4Error(f"surrogate: fitted for rungs {list(model.rungs)}, the race has {list(race.config.rungs)}")
        value, lo, hi = model.predict(trial.config, trial.results)
        veto, rank, n, worst = rank_rule(state.at(k), value, self.prune_fraction, self.min_predictions)
        at_k = [math.inf if t.results[k].bpb is None else t.results[k].bpb for t in race.trials if len(t.results) > k]
        best = trial.results[k].bpb is not None and trial.results[k].bpb <= min(at_k)
        prune = veto and not best
        why = (f"surrogate: predicted top-rung BPB {value:.4f} [{lo:.4f}, {hi:.4f}] ranks {rank} of {n} predictions "
               f"at rung {k + 1}; ")
        if n < self.min_predictions:
            why += f"fewer than {self.min_predictions} predictions: ASHA decides"
        elif prune:
            why += f"among the worst {worst} ({self.prune_fraction:.0%} of {n}): promotion vetoed"
        elif veto:
            why += f"among the worst {worst}, but the trial is best at its rung: never pruned"
        else:
            why += f"not among the worst {worst}: promoted"
        st = SurrogateState(state.predictions + (Prediction(k, trial.trial_id, value, lo, hi, prune),))
        return PruneDecision(st, Judgement(prune, value, why, (lo, hi)), self.verdict)


# ---------------------------------------------------------------- falsifiers and the verdict file
def surrogate_verdict(maes: Mapping[int, float], pruned: int, pruned_top: int, prereg: Prereg) -> Verdict:
    """V4's falsifiers: held-out MAE at every pruning rung (index >= 1) <= surrogate_mae_max, and the
    share of pruned configs in the table's top set <= surrogate_top_pruned_max; either failing disables."""
    judged = {k: float(v) for k, v in maes.items() if k >= 1}
    if not judged or not all(math.isfinite(v) for v in judged.values()):
        return Verdict(False, math.nan, prereg.surrogate_mae_max, f"held-out MAE missing or not finite ({maes})")
    k_max = max(judged, key=lambda k: judged[k])
    mae = judged[k_max]
    maes_txt = ", ".join(f"rung {k + 1} {v:.4f}" for k, v in sorted(judged.items()))
    if mae > prereg.surrogate_mae_max:
        return Verdict(False, mae, prereg.surrogate_mae_max,
                       f"held-out MAE ({maes_txt}) > surrogate_mae_max: the surrogate cannot be trusted, V4 disabled")
    if pruned < 0 or not 0 <= pruned_top <= pruned:
        raise V4Error(f"surrogate_verdict: pruned_top {pruned_top} of pruned {pruned} is not a count")
    share = pruned_top / pruned if pruned else 0.0
    what = (f"held-out MAE ({maes_txt}) <= {prereg.surrogate_mae_max:g}; {pruned_top} of {pruned} pruned configs "
            f"(pooled over replays) in the best {prereg.cheap_promotion_top_fraction:.0%} of the sampled stratum")
    if share > prereg.surrogate_top_pruned_max:
        return Verdict(False, share, prereg.surrogate_top_pruned_max,
                       f"{what}: share {share:.3f} > surrogate_top_pruned_max, it prunes winners; V4 disabled")
    return Verdict(True, share, prereg.surrogate_top_pruned_max,
                   f"{what}: share {share:.3f} <= surrogate_top_pruned_max" + ("" if pruned else " (it pruned nothing)"))


def default_verdict_path() -> Path:
    return repo_root() / "assertions" / VERDICT_FILE


def write_v4_verdict(path: str | os.PathLike, verdict: Verdict, *, table: str, table_sha256: str, preset: str | None,
                     prereg: Prereg, split_seed: int, errors: Sequence[RungErrors], pruned: int, pruned_top: int,
                     repeats: int, extra: Mapping[str, Any] | None = None) -> Path:
    """Writes the study's verdict (atomically) with the table's sha256, the MAEs and the prune counts."""
    return write_verdict_file(path, VERDICT_KIND, verdict, table=table, table_sha256=table_sha256, prereg=prereg,
                              preset=preset, split_seed=int(split_seed), repeats=int(repeats),
                              holdout_errors=[dataclasses.asdict(e) for e in errors], pruned=int(pruned),
                              pruned_top=int(pruned_top), **dict(extra or {}))


def read_v4_verdict(prereg: Prereg, path: str | os.PathLike | None = None, *,
                    table_sha256: str | None = None) -> tuple[Verdict, dict[str, Any]]:
    """(verdict, the file's fields); a missing file is "not judged yet" (disabled, no fields); malformed raises.

    table_sha256: when given, a verdict judged on another table is refused (V4Error).
    """
    p = Path(path) if path is not None else default_verdict_path()
    try:
        return read_verdict_file(p, VERDICT_KIND, prereg, table_sha256=table_sha256, label="V4 verdict",
                                 missing_threshold=prereg.surrogate_top_pruned_max,
                                 missing=f"not judged yet: {p} does not exist (run python -m experiments.v4_study on "
                                         "the curve table); V4 stays off, ASHA alone decides promotions")
    except VerdictFileError as e:
        raise V4Error(str(e)) from None


def load_v4_verdict(prereg: Prereg, path: str | os.PathLike | None = None, *,
                    table_sha256: str | None = None) -> Verdict:
    """V4's verdict from its file (see `read_v4_verdict`)."""
    return read_v4_verdict(prereg, path, table_sha256=table_sha256)[0]


def fit_split(table: "ReplayTable", prereg: Prereg, split_seed: int, *, fold: int = 0, ks: Sequence[int] | None = None,
              params: Mapping[str, Any] | None = None) -> tuple[SurrogateModel, dict[str, int]]:
    """The model fitted on every fold but `fold` (default 0: the pre-registered training split) and the config -> fold map."""
    ex = table_examples(table)
    folds = config_folds([c for c, _ in table.order], prereg.holdout_fraction, split_seed)
    train = [e for e in ex if folds[e.config.config_id] != fold]
    return SurrogateModel.fit(train, table.rungs, seed=split_seed, ks=ks, params=params), folds


def crossfit_pruner(table: "ReplayTable", prereg: Prereg, verdict: Verdict, *, split_seed: int = 0,
                    params: Mapping[str, Any] | None = None) -> tuple[SurrogatePruner, SurrogateModel, dict[str, int]]:
    """(pruner, fold-0 model, folds): one model per fold, each fitted without that fold's configs, and each table
    config judged by the model that never saw it (cross-fitting), so every replayed prune is out of sample.
    The fold-0 model is the training-split model (all rungs); the others fit the pruning rungs only."""
    m0, folds = fit_split(table, prereg, split_seed, params=params)
    prune_ks = range(1, len(table.rungs) - 1)
    models = [m0] + [fit_split(table, prereg, split_seed, fold=j, ks=prune_ks, params=params)[0]
                     for j in range(1, max(folds.values()) + 1)]
    return SurrogatePruner.from_prereg(prereg, verdict, models, route=folds), m0, folds


def live_pruner(prereg: Prereg, *, preset: str, table_path: str | os.PathLike | None = None,
                verdict_path: str | os.PathLike | None = None) -> SurrogatePruner:
    """The pruner of a live (or CLI-replayed) race: the committed table's training-fold model when the verdict
    enables V4 for this preset and this table; otherwise a pruner that never prunes and says why."""
    verdict, data = read_v4_verdict(prereg, verdict_path)
    off = lambda why: SurrogatePruner.from_prereg(prereg, Verdict(False, verdict.statistic, verdict.threshold, why))  # noqa: E731
    if not verdict.enabled:
        return SurrogatePruner.from_prereg(prereg, verdict)
    if data.get("preset") != preset:
        return off(f"judged on the {data.get('preset')} curve table, not for preset {preset}: V4 off for this race")
    from igla_jax.replay import load_table
    tp = Path(table_path) if table_path is not None else repo_root() / "assertions" / str(data["table"])
    table = load_table(tp)
    try:
        read_v4_verdict(prereg, verdict_path, table_sha256=table.sha256)
    except V4Error as e:
        return off(f"refused: {e}; V4 off for this race")
    model, _ = fit_split(table, prereg, int(data["split_seed"]))
    return SurrogatePruner.from_prereg(prereg, verdict, (model,))
