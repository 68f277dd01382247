"""V4: an XGBoost learning-curve surrogate that vetoes promotions, with its falsifiers and verdict file.

The model (features, fit, the power-law baseline, held-out errors): `accelerators.surrogate_model`.

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
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from accelerators.surrogate_model import RungErrors, SurrogateModel, V4Error, config_folds, table_examples
from igla_jax.evidence.prereg import Prereg, repo_root
from igla_jax.evidence.verdict import Verdict, VerdictFileError, read_verdict_file, write_verdict_file
from igla_jax.search.interfaces import Judgement, PruneDecision

if TYPE_CHECKING:
    from igla_jax.execution.replay import ReplayTable
    from igla_jax.search.race import RaceState, Trial

VERDICT_FILE = "v4_verdict.json"
VERDICT_KIND = "igla-v4-verdict"


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
    from igla_jax.execution.replay import load_table
    tp = Path(table_path) if table_path is not None else repo_root() / "assertions" / str(data["table"])
    table = load_table(tp)
    try:
        read_v4_verdict(prereg, verdict_path, table_sha256=table.sha256)
    except V4Error as e:
        return off(f"refused: {e}; V4 off for this race")
    model, _ = fit_split(table, prereg, int(data["split_seed"]))
    return SurrogatePruner.from_prereg(prereg, verdict, (model,))
