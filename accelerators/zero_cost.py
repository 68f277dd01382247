"""V2: the study statistics that decide whether a zero-cost proxy predicts anything, its verdict, the
race's pre-rung filter, and the study on a curve table. The proxies: `accelerators.zero_cost_proxies`.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from scipy import stats

from accelerators.zero_cost_proxies import PROXIES, mean_rank, score_models
from igla_jax.evidence.prereg import Prereg
from igla_jax.evidence.verdict import Verdict
from igla_jax.search.interfaces import FilterDecision
from igla_jax.search.search_space import Config, config_from_dict
from igla_jax.training.models import non_embedding_params

NAME = "zero_cost"


def goodness_rho(score: Sequence[float], bpb: Sequence[float]) -> float:
    """-Spearman(score, BPB): positive when a higher score means a lower (better) BPB.

    Diverged configs (BPB NaN or inf) count as the worst BPB. NaN when either side is constant.
    """
    return float(_goodness_rho_nd(np.asarray(score, np.float64), np.asarray(bpb, np.float64)))


def _goodness_rho_nd(s: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    """goodness_rho along `axis` (vectorised for the bootstrap): Pearson of average ranks, negated."""
    s, b = np.moveaxis(s, axis, -1), np.moveaxis(b, axis, -1)
    b = np.where(np.isfinite(b), b, np.inf)
    if s.shape[-1] < 3:
        return np.full(s.shape[:-1], np.nan)
    rs, rb = stats.rankdata(s, axis=-1), stats.rankdata(b, axis=-1)
    rs, rb = rs - rs.mean(-1, keepdims=True), rb - rb.mean(-1, keepdims=True)
    den = np.sqrt(np.sum(rs * rs, -1) * np.sum(rb * rb, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, -np.sum(rs * rb, -1) / den, np.nan)


def bootstrap_ci(score: Sequence[float], bpb: Sequence[float], *, level: float, seed: int = 0,
                 n_resamples: int = 2000) -> tuple[float, float]:
    """Two-sided percentile bootstrap interval of goodness_rho at `level` (paired resampling of configs).

    Reported intervals use prereg.bootstrap_level. NaN bounds when n < 4 or a resample is degenerate.
    """
    s, b = np.asarray(score, np.float64), np.asarray(bpb, np.float64)
    if len(s) < 4:
        return float("nan"), float("nan")
    res = stats.bootstrap((s, b), _goodness_rho_nd, paired=True, vectorized=True,
                          n_resamples=n_resamples, confidence_level=level, method="percentile",
                          random_state=np.random.default_rng(seed))
    ci = res.confidence_interval
    return float(ci.low), float(ci.high)


# The one-sided decision bound sits at the alpha / bonferroni_n quantile of the bootstrap
# distribution (0.00143 at the v2 constants): 20,000 resamples put ~29 draws below it.
DECISION_RESAMPLES = 20_000
DECISION_SEED = 0   # fixed: the verdict on a given study table is deterministic


def rho_lower_bound(score: Sequence[float], bpb: Sequence[float], *, alpha: float, seed: int = DECISION_SEED,
                    n_resamples: int = DECISION_RESAMPLES) -> float:
    """Lower bound of the one-sided (1 - alpha) percentile bootstrap interval of goodness_rho (paired).

    NaN (which never passes a floor) when n < 4 or a resample has a constant side.
    """
    s, b = np.asarray(score, np.float64), np.asarray(bpb, np.float64)
    if len(s) < 4:
        return float("nan")
    res = stats.bootstrap((s, b), _goodness_rho_nd, paired=True, vectorized=True,
                          n_resamples=n_resamples, confidence_level=1.0 - alpha, alternative="greater",
                          method="percentile", random_state=np.random.default_rng(seed))
    return float(res.confidence_interval.low)


@dataclasses.dataclass(frozen=True)
class StudyRow:
    """One study config with its scores and its measured rung BPB (NaN when diverged)."""
    config: Config
    synflow: float
    grad_norm: float
    params: float
    bpb: float


def rows_from_csv(path: str | Path) -> list[StudyRow]:
    """Reads assertions/zero_cost_study.csv (lines starting with '#' are notes)."""
    p = Path(path)
    try:
        lines = [ln for ln in p.read_text().splitlines() if ln and not ln.startswith("#")]
    except OSError as e:
        raise ValueError(f"{p}: cannot read the study table ({e.strerror or e})") from None
    out = []
    for i, r in enumerate(csv.DictReader(lines)):
        where = f"{p} data row {i + 1}"
        try:
            cfg = config_from_dict(json.loads(r["config"]), source=where)
            out.append(StudyRow(cfg, float(r["synflow"]), float(r["grad_norm"]), float(r["params"]),
                                float(r["bpb"]) if r["bpb"] not in ("", "nan") else float("nan")))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{where}: malformed study row ({e})") from None
    return out


def proxy_table(rows: Sequence[StudyRow], prereg: Prereg, *, seed: int = 0) -> dict[str, dict[str, Any]]:
    """Per subset (overall and each family): n and, per proxy, goodness rho with its interval.

    The interval is the two-sided percentile bootstrap at prereg.bootstrap_level (recorded in each
    subset's "ci_level"). The ensemble is re-ranked within each subset, as the filter ranks within
    its candidate pool.
    """
    subsets = {"overall": list(rows)}
    for fam in sorted({r.config.family for r in rows}):
        subsets[fam] = [r for r in rows if r.config.family == fam]
    table = {}
    for name, rs in subsets.items():
        bpb = [r.bpb for r in rs]
        cols = {"synflow": [r.synflow for r in rs], "grad_norm": [r.grad_norm for r in rs],
                "params": [r.params for r in rs]}
        cols["ensemble"] = list(mean_rank(cols["synflow"], cols["grad_norm"])) if rs else []
        entry: dict[str, Any] = {"n": len(rs), "diverged": int(sum(not math.isfinite(b) for b in bpb)),
                                 "ci_level": prereg.bootstrap_level}
        for proxy in PROXIES:
            lo, hi = bootstrap_ci(cols[proxy], bpb, level=prereg.bootstrap_level, seed=seed)
            entry[proxy] = {"rho": goodness_rho(cols[proxy], bpb), "ci": [lo, hi]}
        table[name] = entry
    return table


def choose_proxy(rows: Sequence[StudyRow], prereg: Prereg) -> tuple[str | None, Verdict]:
    """Which score the filter may use ('ensemble', 'params' or None = V2 off) and the verdict.

    Statistic: goodness rho = -Spearman(score, BPB) over all study rows, so a proxy that ranks
    high exactly the configs with bad BPB scores negative and never passes (|rho| would pass it).
    The decision is statistical, at the per-arm level alpha / bonferroni_n (pre-registration v2):
    a proxy passes only when the lower bound of the one-sided (1 - alpha / bonferroni_n) paired
    percentile bootstrap interval of its rho (`rho_lower_bound`, fixed seed, so deterministic)
    reaches proxy_rho_min. The ensemble is enabled when its bound passes and its point rho beats
    parameter count's; else parameter count alone may be used when its bound passes; else V2 is
    off. The verdict's statistic is the lower bound of the proxy it names (the ensemble's when off).
    """
    floor, a = prereg.proxy_rho_min, prereg.alpha_per_arm
    level = (f"one-sided {1 - a:.5f} paired bootstrap lower bound (alpha / {prereg.bonferroni_n} = "
             f"{prereg.alpha} / {prereg.bonferroni_n} = {a:.3g}, {DECISION_RESAMPLES} resamples)")
    n = len(rows)
    if n < 4:
        return None, Verdict(False, float("nan"), floor, f"only {n} study rows (need >= 4 for a bootstrap): "
                                                         "nothing to decide on; V2 is off")
    bpb = [r.bpb for r in rows]
    ens_score = mean_rank([r.synflow for r in rows], [r.grad_norm for r in rows])
    par_score = [r.params for r in rows]
    ens, par = goodness_rho(ens_score, bpb), goodness_rho(par_score, bpb)
    ens_lo = rho_lower_bound(ens_score, bpb, alpha=a)
    par_lo = rho_lower_bound(par_score, bpb, alpha=a)
    said = (f"on {n} configs: ensemble -rho {ens:.3f} (lower bound {ens_lo:.3f}), parameter count -rho "
            f"{par:.3f} (lower bound {par_lo:.3f}); {level}")
    if ens_lo >= floor and not par >= ens:
        return "ensemble", Verdict(True, ens_lo, floor, f"ensemble lower bound >= {floor} and its -rho beats "
                                                        f"parameter count's {said}")
    if par_lo >= floor:
        return "params", Verdict(True, par_lo, floor, f"ensemble fails (lower bound below {floor}, or -rho not "
                                                      f"above parameter count's); parameter count alone passes "
                                                      f"(lower bound >= {floor}): the filter ranks by parameter "
                                                      f"count {said}")
    return None, Verdict(False, ens_lo, floor, f"neither lower bound reaches {floor} (or the ensemble does not "
                                               f"beat parameter count) {said}; V2 is off")


def proxy_verdict(study_rows: Sequence[StudyRow], prereg: Prereg) -> Verdict:
    """V2's falsifier (INV-14): enabled iff the study supports a proxy at alpha / bonferroni_n (see `choose_proxy`)."""
    return choose_proxy(study_rows, prereg)[1]


# ---------------------------------------------------------------------------------- the filter
def n_kept(n: int, drop_fraction: float) -> int:
    """How many of n candidates survive dropping the bottom drop_fraction (at least one)."""
    return max(1, n - int(math.floor(drop_fraction * n + 1e-9)))


@dataclasses.dataclass(frozen=True)
class ZeroCostFilter:
    """The race's pre-rung filter (igla_jax.search.interfaces.Filter): score the pool, keep the top fraction.

    `score` runs in the executor (it computes); `keep` is pure. `proxy` is what the study allowed
    ('ensemble' or 'params'); with proxy None the verdict is disabled and the race never asks.
    """
    verdict: Verdict
    proxy: str | None
    drop_fraction: float
    context: int
    batch: int
    seed: int
    head_dim: int = 32
    name: str = NAME

    def __post_init__(self) -> None:
        if self.proxy not in (None, "ensemble", "params"):
            raise ValueError(f"ZeroCostFilter.proxy={self.proxy!r}: choose 'ensemble', 'params' or None")
        if self.verdict.enabled and self.proxy is None:
            raise ValueError("ZeroCostFilter: an enabled verdict needs a proxy")

    @classmethod
    def from_study(cls, rows: Sequence[StudyRow], prereg: Prereg, *, context: int, batch: int, seed: int,
                   head_dim: int = 32) -> "ZeroCostFilter":
        proxy, verdict = choose_proxy(rows, prereg)
        return cls(verdict, proxy, prereg.proxy_drop_fraction, context, batch, seed, head_dim)

    def scores(self, configs: Sequence[Config]) -> dict[str, np.ndarray]:
        """Every proxy of every candidate (the ensemble ranked within this pool)."""
        cfgs = [c.to_model_config(context=self.context, head_dim=self.head_dim) for c in configs]
        return score_models(cfgs, [self.seed] * len(cfgs), batch=self.batch)

    def score(self, configs: Sequence[Config]) -> tuple[float, ...]:
        if not configs:
            return ()
        if self.proxy == "params":
            return tuple(float(non_embedding_params(c.to_model_config(context=self.context, head_dim=self.head_dim)))
                         for c in configs)
        return tuple(float(s) for s in self.scores(configs)["ensemble"])

    def init(self, seed: int) -> None:
        return None  # stateless: the study's verdict is fixed for the race

    def keep(self, state: Any, configs: Sequence[Config], scores: Sequence[float]) -> FilterDecision:
        """Top n_kept by score; ties broken by config_id so the choice is deterministic."""
        return FilterDecision(state, self.keep_top(configs, scores), self.verdict)

    def keep_top(self, configs: Sequence[Config], scores: Sequence[float]) -> tuple[bool, ...]:
        if len(configs) != len(scores):
            raise ValueError(f"ZeroCostFilter.keep: {len(configs)} configs but {len(scores)} scores")
        order = sorted(range(len(configs)), key=lambda i: (-float(scores[i]), configs[i].config_id))
        kept = set(order[:n_kept(len(configs), self.drop_fraction)])
        return tuple(i in kept for i in range(len(configs)))


# ------------------------------------------------------------------- the study on a curve table
def table_study(rows: Sequence[Mapping[str, Any]], *, rungs: Sequence[int], context: int, batch: int,
                head_dim: int, prereg: Prereg, seed: int = 0) -> dict[str, Any]:
    """Every proxy of every primary-seed config of a recorded curve table, and its goodness rho with
    the validation BPB at each rung (overall and per family), with bootstrap intervals at
    prereg.bootstrap_level, beside parameter count. Scores use each run's own training seed."""
    prim = [r for r in rows if r["seed_role"] == "primary"]
    cfgs = [config_from_dict(r["config"], source=f"table config {r['config_id']}") for r in prim]
    mcs = [c.to_model_config(context=context, head_dim=head_dim) for c in cfgs]
    sc = score_models(mcs, [int(r["seed"]) for r in prim], batch=batch)
    out: dict[str, Any] = {"n": len(prim), "level": prereg.bootstrap_level, "rungs": {}}
    fams = sorted({c.family for c in cfgs})
    for k in rungs:
        bpb = np.array([math.inf if r["val_bpb"][r["ladder"].index(k)] is None else r["val_bpb"][r["ladder"].index(k)]
                        for r in prim], np.float64)
        per: dict[str, Any] = {}
        for name in ["overall", *fams]:
            idx = [i for i, c in enumerate(cfgs) if name == "overall" or c.family == name]
            cols = {p: np.asarray(sc[p])[idx] for p in ("synflow", "grad_norm", "params")}
            cols["ensemble"] = mean_rank(cols["synflow"], cols["grad_norm"])  # re-ranked within the subset
            per[name] = {"n": len(idx)}
            for p in PROXIES:
                lo, hi = bootstrap_ci(cols[p], bpb[idx], level=prereg.bootstrap_level, seed=seed)
                per[name][p] = {"rho": goodness_rho(cols[p], bpb[idx]), "ci": [lo, hi]}
        out["rungs"][str(k)] = per
    return out
