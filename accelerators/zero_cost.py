"""V2 zero-cost proxies (synflow, grad_norm, their mean-rank ensemble), the parameter-count baseline,
the study statistics that decide whether they predict anything, and the race's pre-rung filter.

Definitions (Abdelfattah et al. 2021, NASLib; REFERENCE.md section 5). "Weight matrices" are the
parameters whose muP role is hidden, query or readout; embeddings and vectors are not scored.
- synflow: every parameter replaced by its absolute value, float64 (x64 enabled only inside the
  call, by the scoped `jax.enable_x64(True)` context manager), an all-ones input injected after the
  embedding lookup (the token table is set to 1 / alpha_in and the position table to 0, so the
  lookup yields exactly ones), R = sum of the LM logits, score = sum over weight matrices of
  sum |theta * dR/dtheta|.
  synflow reuses the float32 init drawn by grad_norm's call (cast to float64 inside the scope).
- grad_norm: one real training minibatch (`get_batch(train, seed, step=0)`, the trial's first
  batch), the LM cross-entropy in nats, score = sum over weight matrices of the L2 norm of that
  matrix's gradient. Evaluation mode (dropout off); for jepa only the LM cross-entropy, so the
  latent predictor's matrices get zero gradient.
- params: non-embedding parameter count. ensemble: mean of the synflow and grad_norm ranks within
  the scored set (higher is better for every score).

Two honest deviations, both forced by the models and both tested:
1. muP zero-initialises the readout and the query. At that init dR/dtheta and dLoss/dtheta are
   exactly zero for everything below the readout, and theta = 0 for the readout, so synflow is 0
   and grad_norm sees the readout alone, for every config. The proxies therefore score the muP
   model at its init with the readout and query drawn as the standard parametrization draws them
   (normal, variance 1/fan_in, same key); every other tensor, multiplier and the attention scale
   stay muP. This init exists only inside the proxy; training is untouched.
2. The models use a non-parametric pre-norm LayerNorm. LayerNorm of an all-ones vector is exactly
   0, so literal synflow is 0 for every config. Inside synflow only, LayerNorm acts as the
   identity (the analogue of the eval-mode BatchNorm at its initial statistics in the synflow
   paper): the name `layer_norm` in igla_jax.models.layers and igla_jax.models.jepa is swapped
   for the identity while the synflow function is traced, and restored at once (core files are
   not edited). With positive weights every gate pre-activation is large and positive, so the
   hybrid family's recurrence gates saturate (a = 1) and its recurrent mixers contribute exactly 0
   to synflow; and since every position sees the same input, attention is uniform whatever the
   query, so query matrices contribute ~0. Known blind spots of synflow on gated layers and
   attention, left as measured (tests/test_zero_cost.py shows the literal forms are degenerate).

Each score of a config is one jitted call doing one forward and one backward pass (`jax.grad`);
configs of the same proxy shape (family, width, depth, context: the levers a proxy at init can
see) are scored together under `jax.vmap`. Optimiser levers (lr, beta, warmup, wd) and dropout are
invisible to any at-init proxy: configs that differ only in them get identical scores.
"""
from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import math
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from igla_jax.data import get_batch, splits, token_bits
from igla_jax.models import ModelConfig, init_params, logits_fn, non_embedding_params
from igla_jax.models import jepa as _jepa_module
from igla_jax.models import layers as _layers_module
from igla_jax.models.mup import Role, role_of
from igla_jax.interfaces import FilterDecision
from igla_jax.prereg import Prereg
from igla_jax.search_space import Config, config_from_dict
from igla_jax.verdict import Verdict

NAME = "zero_cost"
SCORED_ROLES = (Role.HIDDEN, Role.QUERY, Role.READOUT)
ZERO_INIT_ROLES = (Role.QUERY, Role.READOUT)
PROXIES = ("synflow", "grad_norm", "ensemble", "params")
_NORM_SITES = (_layers_module, _jepa_module)
for _m in _NORM_SITES:  # fail at import, not silently, if the models stop naming their norm so
    if not callable(getattr(_m, "layer_norm", None)):
        raise ImportError(f"{_m.__name__}.layer_norm is gone; synflow's identity-norm swap needs updating")


# ------------------------------------------------------------------------------------ the proxies
def proxy_model_config(cfg: ModelConfig) -> ModelConfig:
    """The config a proxy sees: dropout off (proxies score the architecture at init, deterministically)."""
    return dataclasses.replace(cfg, dropout=0.0)


def proxy_init(cfg: ModelConfig, key: jax.Array) -> Any:
    """Parameters at init, with muP's zero-initialised readout and query drawn as under sp (see module doc)."""
    params, _ = init_params(cfg, key)
    if cfg.param != "mup":
        return params
    sp, _ = init_params(dataclasses.replace(cfg, param="sp"), key)
    pick = lambda path, m, s: s if role_of(str(path[-1].key)) in ZERO_INIT_ROLES else m  # noqa: E731
    return jax.tree_util.tree_map_with_path(pick, params, sp)


def _matrix_leaves(tree: Any) -> list[jax.Array]:
    """Leaves of `tree` at the weight-matrix roles, in tree order."""
    return [v for p, v in jax.tree_util.tree_leaves_with_path(tree)
            if role_of(str(p[-1].key)) in SCORED_ROLES]


@contextlib.contextmanager
def identity_norms() -> Iterator[None]:
    """While tracing synflow only: LayerNorm -> identity in the model modules (restored on exit)."""
    saved = [m.layer_norm for m in _NORM_SITES]
    try:
        for m in _NORM_SITES:
            m.layer_norm = lambda x, eps=1e-5: x
        yield
    finally:
        for m, f in zip(_NORM_SITES, saved):
            m.layer_norm = f


def _ones_after_embedding(cfg: ModelConfig, params: Any) -> Any:
    """Token table 1 / alpha_in and position table 0: the embedding lookup then yields all ones."""
    def leaf(path, v):
        name = str(path[-1].key)
        if name == "tok_emb":
            return jnp.full_like(v, 1.0 / cfg.alpha_in if cfg.param == "mup" else 1.0)
        if name == "pos_emb":
            return jnp.zeros_like(v)
        return v
    return jax.tree_util.tree_map_with_path(leaf, params)


def synflow_objective(cfg: ModelConfig, params: Any) -> jax.Array:
    """R = sum of the logits on the all-ones post-embedding input (LayerNorm as identity)."""
    x_1xL = jnp.zeros((1, cfg.context), jnp.int32)  # any tokens: every row of the table is ones
    with identity_norms():
        return jnp.sum(logits_fn(cfg, _ones_after_embedding(cfg, params), x_1xL))


def _synflow_one(cfg: ModelConfig, params32: Any) -> jax.Array:
    params = jax.tree_util.tree_map(lambda v: jnp.abs(v.astype(jnp.float64)), params32)
    grads = jax.grad(lambda p: synflow_objective(cfg, p))(params)
    return sum(jnp.sum(jnp.abs(t * g)) for t, g in zip(_matrix_leaves(params), _matrix_leaves(grads)))


def grad_norm_objective(cfg: ModelConfig, params: Any, x_BxL: jax.Array, y_BxL: jax.Array) -> jax.Array:
    """Mean LM cross-entropy in nats (evaluation mode)."""
    return jnp.mean(token_bits(logits_fn(cfg, params, x_BxL), y_BxL)) * math.log(2.0)


def _init_and_grad_norm(cfg: ModelConfig, key: jax.Array, x_BxL: jax.Array,
                        y_BxL: jax.Array) -> tuple[jax.Array, Any]:
    params = proxy_init(cfg, key)
    grads = jax.grad(lambda p: grad_norm_objective(cfg, p, x_BxL, y_BxL))(params)
    return sum(jnp.sqrt(jnp.sum(jnp.square(g))) for g in _matrix_leaves(grads)), params


# A proxy program runs once per shape, so its compile time is its cost: XLA's backend optimisation
# is turned down for these two programs only (attn w64 d2 on the loaded 2-core CPU: 27 s -> 15 s
# of compile, run time unchanged, synflow equal to 5e-9 relative).
_FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
# grad_norm's call also returns the float32 init, which synflow then reuses inside the x64 scope
# (under x64 flax would draw other, float64 values from the same key).
_grad_norm_pop = jax.jit(jax.vmap(_init_and_grad_norm, in_axes=(None, 0, None, None)), static_argnums=0,
                         compiler_options=_FAST_COMPILE)
_synflow_pop = jax.jit(jax.vmap(_synflow_one, in_axes=(None, 0)), static_argnums=0,
                       compiler_options=_FAST_COMPILE)


def proxy_scores(cfg: ModelConfig, keys_K: jax.Array, x_BxL: jax.Array,
                 y_BxL: jax.Array) -> tuple[np.ndarray, np.ndarray]:
    """(synflow_K, grad_norm_K) of K same-shape inits: two vmapped jitted calls, x64 only around synflow's."""
    cfg = proxy_model_config(cfg)
    gn_K, params_K = _grad_norm_pop(cfg, keys_K, x_BxL, y_BxL)
    with jax.enable_x64(True):
        syn_K = np.asarray(_synflow_pop(cfg, params_K), np.float64)
    return syn_K, np.asarray(gn_K, np.float64)


def minibatch(seed: int, *, batch: int, context: int) -> tuple[jax.Array, jax.Array]:
    """The trial's first training batch: get_batch(train, seed, step=0)."""
    return get_batch(jnp.asarray(splits()[0]), seed, 0, batch=batch, context=context)


def mean_rank(*scores: Sequence[float]) -> np.ndarray:
    """Mean over proxies of each item's rank (1 = lowest score; ties get their average rank)."""
    return np.mean([stats.rankdata(np.asarray(s, np.float64)) for s in scores], axis=0)


def score_models(cfgs: Sequence[ModelConfig], seeds: Sequence[int], *, batch: int) -> dict[str, np.ndarray]:
    """synflow, grad_norm, ensemble (mean rank within this set) and params of each (cfg, init seed)."""
    if len(cfgs) != len(seeds):
        raise ValueError(f"score_models: {len(cfgs)} configs but {len(seeds)} seeds")
    n = len(cfgs)
    syn, gn = np.zeros(n), np.zeros(n)
    groups: dict[tuple[ModelConfig, int], list[int]] = {}
    for i, (c, s) in enumerate(zip(cfgs, seeds)):
        groups.setdefault((proxy_model_config(c), int(s)), []).append(i)
    # same proxy shape + same data seed: one vmapped call over the members' init keys
    for (c, s), idx in groups.items():
        keys = jnp.stack([jax.random.PRNGKey(int(seeds[i])) for i in idx])
        x, y = minibatch(s, batch=batch, context=c.context)
        syn[idx], gn[idx] = proxy_scores(c, keys, x, y)
    params = np.array([non_embedding_params(c) for c in cfgs], np.float64)
    return {"synflow": syn, "grad_norm": gn, "ensemble": mean_rank(syn, gn) if n else syn, "params": params}


# ------------------------------------------------------------------------------ the statistics
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
    """The race's pre-rung filter (igla_jax.interfaces.Filter): score the pool, keep the top fraction.

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
