"""V2 zero-cost proxies: gradients vs finite differences, determinism, scoped x64, the verdict, the filter."""
from __future__ import annotations

import dataclasses
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree
from scipy import stats

from accelerators import zero_cost as zc
from accelerators import zero_cost_proxies as zp
from igla_jax.evidence.prereg import load_prereg
from igla_jax.evidence.verdict import Verdict
from igla_jax.search.interfaces import RandomSampler
from igla_jax.search.race import Prune, Race, RaceConfig, Score, Scored, Start, Train
from igla_jax.search.search_space import SearchSpace, sample
from igla_jax.training.models import ModelConfig, init_params, logits_fn

TINY = dict(width=16, depth=1, context=8, head_dim=8)
PREREG = load_prereg()


def tiny(family: str = "attn", **kw) -> ModelConfig:
    return ModelConfig(family=family, **{**TINY, **kw})


# ------------------------------------------------------------------ gradients and scores
@pytest.mark.parametrize("family", ["attn", "hybrid"])
def test_proxy_gradients_match_finite_differences(family):
    """The jax.grad both proxies use agrees with central differences (float64, scoped)."""
    cfg = tiny(family)
    x, y = zp.minibatch(0, batch=2, context=cfg.context)
    with jax.enable_x64(True):
        signed = jax.tree_util.tree_map(lambda v: v.astype(jnp.float64), zp.proxy_init(cfg, jax.random.PRNGKey(0)))
        p64 = jax.tree_util.tree_map(jnp.abs, signed)
        flat, unravel = ravel_pytree(p64)
        # synflow's R is ~1e3-1e4 here: compare relative to its scale
        scale = float(zp.synflow_objective(cfg, p64))
        syn = jax.jit(lambda f: zp.synflow_objective(cfg, unravel(f)) / scale)
        chex.assert_numerical_grads(syn, (flat,), order=1, atol=1e-7, rtol=1e-5, modes=["rev"], eps=1e-4)
        # token_bits computes the cross-entropy in float32 even under x64: a float32 tolerance
        ce = jax.jit(lambda f: zp.grad_norm_objective(cfg, unravel(f), x, y))
        chex.assert_numerical_grads(ce, (ravel_pytree(signed)[0],), order=1, atol=1e-7, rtol=3e-3, modes=["rev"],
                                    eps=1e-3)
    assert not jax.config.x64_enabled


def test_scores_deterministic_vmapped_and_x64_scoped():
    cfg = tiny()
    a = zp.score_models([cfg, cfg], [0, 1], batch=2)
    assert not jax.config.x64_enabled and jnp.ones(1).dtype == jnp.float32, "x64 left enabled by synflow"
    b = zp.score_models([cfg, cfg], [0, 1], batch=2)
    for k in ("synflow", "grad_norm", "params"):
        np.testing.assert_array_equal(a[k], b[k], err_msg=f"{k} not deterministic for a seed")
    assert np.all(np.isfinite(a["synflow"])) and np.all(a["synflow"] > 0) and np.all(a["grad_norm"] > 0)
    assert a["synflow"][0] != a["synflow"][1], "different init seeds must give different synflow"
    # the vmapped pair equals each config scored alone (grad_norm: the batch is the seed's first)
    one = zp.score_models([cfg], [1], batch=2)
    np.testing.assert_allclose(one["synflow"][0], a["synflow"][1], rtol=1e-9)
    np.testing.assert_allclose(one["grad_norm"][0], a["grad_norm"][1], rtol=1e-5)
    assert a["params"][0] == zc.non_embedding_params(cfg)
    # dropout is invisible to the proxies (evaluation mode)
    drop = zp.score_models([dataclasses.replace(cfg, dropout=0.2)], [1], batch=2)
    np.testing.assert_array_equal(drop["synflow"], one["synflow"])


def test_literal_proxies_are_degenerate_which_is_why_the_proxy_init_exists():
    """muP zero readout/query make synflow exactly 0; LayerNorm of all-ones makes R exactly 0."""
    cfg = tiny()
    mup_params, _ = init_params(cfg, jax.random.PRNGKey(0))
    with jax.enable_x64(True):
        p64 = jax.tree_util.tree_map(lambda v: jnp.abs(v.astype(jnp.float64)), mup_params)
        g = jax.grad(lambda p: zp.synflow_objective(cfg, p))(p64)
        literal = sum(float(jnp.sum(jnp.abs(t * d))) for t, d in zip(zp._matrix_leaves(p64), zp._matrix_leaves(g)))
        proxy = jax.tree_util.tree_map(lambda v: jnp.abs(v.astype(jnp.float64)),
                                       zp.proxy_init(cfg, jax.random.PRNGKey(0)))
        with_norm = float(jnp.sum(logits_fn(cfg, zp._ones_after_embedding(cfg, proxy),
                                               jnp.zeros((1, cfg.context), jnp.int32))))
    assert literal == 0.0
    assert with_norm == 0.0
    assert zp.score_models([cfg], [0], batch=2)["synflow"][0] > 0.0
    # the swap is undone: the model's LayerNorm is back
    from igla_jax.training.models import layers
    assert float(jnp.abs(layers.layer_norm(jnp.ones((1, 4)))).max()) == 0.0


# ------------------------------------------------------------------ verdict
def _rows(bpb, synflow, grad_norm, params):
    cfgs = [c for f in ("attn", "jepa", "hybrid") for c in sample(7, f, 10)]
    return [zc.StudyRow(c, float(s), float(g), float(p), float(b))
            for c, b, s, g, p in zip(cfgs, bpb, synflow, grad_norm, params)]


def test_falsify_proxy_bias():
    """A proxy ranking high exactly the configs stuck at baseline BPB is rejected; an informative one passes."""
    rng = np.random.default_rng(0)
    n = 30
    stuck = np.arange(n) % 2 == 0                       # half the configs never leave the uniform baseline
    bpb = np.where(stuck, 8.0, 2.2 + rng.uniform(0, 0.6, n))
    params = rng.permutation(n) * 1000.0               # uninformative parameter count
    biased = np.where(stuck, 10.0, 1.0) + rng.uniform(0, 0.1, n)
    rows = _rows(bpb, biased * 1e6, biased, params)
    v = zc.proxy_verdict(rows, PREREG)
    assert v.enabled is False and v.statistic < 0 and v.threshold == PREREG.proxy_rho_min
    rho = zc.goodness_rho(zp.mean_rank(biased * 1e6, biased), bpb)
    assert rho < 0 and abs(rho) >= PREREG.proxy_rho_min, "the fold must fool a |rho| rule, else it tests nothing"
    good = -bpb + rng.normal(0, 0.05, n)
    rows = _rows(bpb, np.exp(good), good + rng.normal(0, 0.05, n), params)
    proxy, v = zc.choose_proxy(rows, PREREG)
    assert v.enabled is True and proxy == "ensemble" and v.statistic >= PREREG.proxy_rho_min
    # parameter count alone informative, proxies not: the filter may use the count and says so
    rows = _rows(bpb, rng.permutation(n), rng.permutation(n), np.exp(good))
    proxy, v = zc.choose_proxy(rows, PREREG)
    assert proxy == "params" and v.enabled and "parameter count" in v.reason


def test_goodness_rho_sign_and_diverged_rows():
    bpb = [2.0, 2.5, 3.0, float("nan")]
    assert zc.goodness_rho([4, 3, 2, 1], bpb) == pytest.approx(1.0)   # diverged = worst BPB
    assert zc.goodness_rho([1, 2, 3, 4], bpb) == pytest.approx(-1.0)
    assert math.isnan(zc.goodness_rho([1, 1, 1, 1], bpb))
    lo, hi = zc.bootstrap_ci(np.arange(20.0), -np.arange(20.0) + np.sin(np.arange(20.0)), level=0.95)
    assert 0.5 < lo <= hi <= 1.0


def test_vectorised_rho_equals_scipy_spearman():
    """The bootstrap's vectorised statistic is -spearmanr, ties and diverged rows included (to 1e-12)."""
    rng = np.random.default_rng(1)
    s_KxN = np.concatenate([rng.normal(size=(50, 17)), rng.integers(0, 4, size=(50, 17)).astype(float)])
    b_KxN = rng.normal(size=(100, 17))
    b_KxN[rng.random(b_KxN.shape) < 0.1] = np.nan
    got_K = zc._goodness_rho_nd(s_KxN, b_KxN)
    for s, b, g in zip(s_KxN, b_KxN, got_K):
        want = -stats.spearmanr(s, np.where(np.isfinite(b), b, np.inf)).statistic
        assert g == pytest.approx(want, abs=1e-12) and zc.goodness_rho(s, b) == g
    assert np.isnan(zc._goodness_rho_nd(np.ones((2, 5)), b_KxN[:2, :5])).all()


def _moderate(seed: int = 0, n: int = 30):
    """bpb and a proxy with point -rho ~0.81 on 30 configs: above the floor, not significantly so."""
    rng = np.random.default_rng(seed)
    bpb = 2.2 + rng.uniform(0, 0.6, n)
    return bpb, -bpb + rng.normal(0, 0.12, n), rng.permutation(n) * 1000.0


def test_falsify_proxy_decision_is_a_test_at_alpha_per_arm():
    """A proxy passes only when its one-sided (1 - alpha / 7) bootstrap lower bound reaches the floor."""
    bpb, good, params = _moderate()
    floor = PREREG.proxy_rho_min
    assert zc.goodness_rho(good, bpb) >= floor + 0.2, "the point rho must pass the old point rule"
    proxy, v = zc.choose_proxy(_rows(bpb, np.exp(good), good, params), PREREG)
    assert proxy is None and not v.enabled and v.statistic < floor
    assert v.statistic == zc.rho_lower_bound(zp.mean_rank(np.exp(good), good), bpb, alpha=PREREG.alpha_per_arm)
    assert "alpha / 7 = 0.01 / 7 = 0.00143" in v.reason and "one-sided 0.99857" in v.reason
    assert f"lower bound {v.statistic:.3f}" in v.reason
    # the same data pass at the uncorrected one-sided 0.95: the per-arm level is what rejects them
    loose = dataclasses.replace(PREREG, alpha=0.05, bonferroni_n=1)
    proxy, v = zc.choose_proxy(_rows(bpb, np.exp(good), good, params), loose)
    assert proxy == "ensemble" and v.enabled and v.statistic >= floor and "alpha / 1 = 0.05" in v.reason
    # a strong proxy passes at the corrected level, with the same statement of level and bound
    strong = -bpb + np.random.default_rng(1).normal(0, 0.03, len(bpb))
    proxy, v = zc.choose_proxy(_rows(bpb, np.exp(strong), strong, params), PREREG)
    assert proxy == "ensemble" and v.enabled and v.statistic >= floor and "0.00143" in v.reason


def test_proxy_verdict_is_deterministic():
    bpb, good, params = _moderate()
    rows = _rows(bpb, np.exp(good), good, params)
    assert zc.proxy_verdict(rows, PREREG) == zc.proxy_verdict(rows, PREREG)
    assert zc.choose_proxy(rows[:3], PREREG)[1].enabled is False   # too few rows for a bootstrap


def test_reported_intervals_use_the_preregistered_level():
    bpb, good, params = _moderate()
    s = np.exp(good)
    lo95, hi95 = zc.bootstrap_ci(s, bpb, level=0.95)
    lo50, hi50 = zc.bootstrap_ci(s, bpb, level=0.5)
    assert lo95 < lo50 <= hi50 < hi95
    rows = _rows(bpb, s, good, params)
    for level in (PREREG.bootstrap_level, 0.5):
        t = zc.proxy_table(rows, dataclasses.replace(PREREG, bootstrap_level=level))
        assert t["overall"]["ci_level"] == level
        assert tuple(t["overall"]["synflow"]["ci"]) == zc.bootstrap_ci(s, bpb, level=level)


def test_study_table_roundtrip_and_malformed(tmp_path):
    c = sample(1, "attn", 1)[0]
    p = tmp_path / "s.csv"
    p.write_text("# note\nconfig_id,family,config,synflow,grad_norm,ensemble,params,bpb\n"
                 f"{c.config_id},attn,\"{c.canonical_json().replace(chr(34), chr(34) * 2)}\",1.5,2,1,100,nan\n")
    (r,) = zc.rows_from_csv(p)
    assert r.config == c and r.synflow == 1.5 and math.isnan(r.bpb)
    p.write_text("config_id,family,config,synflow,grad_norm,ensemble,params,bpb\nx,attn,{},1,2,1,100,2.0\n")
    with pytest.raises(ValueError, match="data row 1"):
        zc.rows_from_csv(p)


# ------------------------------------------------------------------ filter
def test_filter_keeps_top_fraction_deterministically():
    cfgs = sample(3, "attn", 10)
    on = Verdict(True, 1.0, PREREG.proxy_rho_min, "test")
    f = zc.ZeroCostFilter(on, "ensemble", PREREG.proxy_drop_fraction, context=8, batch=2, seed=0, head_dim=8)
    keep = f.keep(f.init(0), cfgs, [float(i) for i in range(10)]).keep
    assert sum(keep) == zc.n_kept(10, PREREG.proxy_drop_fraction) == 2 and keep[-1] and keep[-2]
    ties = f.keep(None, cfgs, [1.0] * 10).keep
    assert ties == f.keep(None, list(reversed(cfgs)), [1.0] * 10).keep[::-1], "ties must be broken by config id"
    assert zc.n_kept(1, PREREG.proxy_drop_fraction) == 1
    with pytest.raises(ValueError):
        zc.ZeroCostFilter(on, None, PREREG.proxy_drop_fraction, context=8, batch=2, seed=0)
    # ensemble mode scores real candidates: same proxy shape (only optimiser levers differ) -> a tie
    same_shape = sample(0, "attn", 2, SearchSpace(width=(16,), depth=(1,), head_dim=8))
    assert f.score(same_shape) == (1.5, 1.5)


def test_filter_in_race_prunes_with_decided_by_zero_cost():
    space = SearchSpace(width=(16, 32, 48), depth=(1, 2, 3), head_dim=16)
    rows = _rows(np.arange(30.0), np.arange(30.0), np.arange(30.0), -np.arange(30.0))  # params informative
    f = zc.ZeroCostFilter.from_study(rows, PREREG, context=8, batch=2, seed=42, head_dim=16)
    assert f.proxy == "params" and f.verdict.enabled
    race = Race(RaceConfig(rungs=(2, 6), eta=3, seed=42, max_trials=2, victory_seeds=(42, 43),
                           reproduce_tol=1e-4, score_pool=10), filter=f,
                sampler=RandomSampler(space))
    state, acts = race.step(race.init(), Start())
    (score,) = [a for a in acts if isinstance(a, Score)]
    scores = f.score(score.candidates)
    state, acts = race.step(state, Scored(score.action_id, scores))
    prunes = [a for a in acts if isinstance(a, Prune)]
    assert len(prunes) == 10 - zc.n_kept(10, PREREG.proxy_drop_fraction)
    assert all(p.decided_by == "zero_cost" and p.trial_id == "" for p in prunes)
    kept = [a.config for a in acts if isinstance(a, Train)] + list(state.queue)
    assert min(scores[score.candidates.index(c)] for c in kept) >= max(p.score for p in prunes)
    assert ("zero_cost", f.verdict) in state.verdicts
