"""V2 zero-cost proxies (synflow, grad_norm, their mean-rank ensemble) and the parameter-count baseline.

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
   paper): the name `layer_norm` in igla_jax.training.models.layers and igla_jax.training.models.jepa is swapped
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
import dataclasses
import math
from typing import Any, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from igla_jax.training.data import get_batch, splits, token_bits
from igla_jax.training.models import ModelConfig, init_params, logits_fn, non_embedding_params
from igla_jax.training.models import jepa as _jepa_module
from igla_jax.training.models import layers as _layers_module
from igla_jax.training.models.mup import Role, role_of

SCORED_ROLES = (Role.HIDDEN, Role.QUERY, Role.READOUT)
ZERO_INIT_ROLES = (Role.QUERY, Role.READOUT)
PROXIES = ("synflow", "grad_norm", "ensemble", "params")
_NORM_SITES = (_layers_module, _jepa_module)
for _m in _NORM_SITES:  # fail at import, not silently, if the models stop naming their norm so
    if not callable(getattr(_m, "layer_norm", None)):
        raise ImportError(f"{_m.__name__}.layer_norm is gone; synflow's identity-norm swap needs updating")


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
