"""The three model families behind one small interface (init, loss, logits, aux update)."""
from __future__ import annotations

import math
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import flax.linen as nn

from igla_jax.training.data import token_bits
from igla_jax.training.models import mup
from igla_jax.training.models.attn import AttnLM, Encoder
from igla_jax.training.models.config import FAMILIES, MATMUL_DTYPES, TRACED_FIELDS, ConfigError, ModelConfig
from igla_jax.training.models.hybrid import HybridLM
from igla_jax.training.models.jepa import JepaLM, ema_update, latent_loss

__all__ = [
    "FAMILIES", "MATMUL_DTYPES", "TRACED_FIELDS", "ConfigError", "ModelConfig", "build_model", "init_params", "loss_fn",
    "logits_fn", "update_aux", "traced_hparams", "count_params", "non_embedding_params", "intermediates",
    "ema_update", "mup",
]

_CLASSES = {"attn": AttnLM, "jepa": JepaLM, "hybrid": HybridLM}


def build_model(cfg: ModelConfig) -> nn.Module:
    """The Flax module of cfg.family."""
    return _CLASSES[cfg.family](cfg)


def _dummy(cfg: ModelConfig) -> jax.Array:
    return jnp.zeros((1, cfg.context), jnp.int32)


def init_params(cfg: ModelConfig, key: jax.Array) -> tuple[Any, Any]:
    """(params, aux): aux holds non-trained state (the jepa EMA target encoder), else {}."""
    method = JepaLM.train_outputs if cfg.family == "jepa" else None
    params = build_model(cfg).init(key, _dummy(cfg), method=method)["params"]
    aux = {"ema": jax.tree_util.tree_map(jnp.copy, params["encoder"])} if cfg.family == "jepa" else {}
    return params, aux


def logits_fn(cfg: ModelConfig, params: Any, x_BxL: jax.Array) -> jax.Array:
    """Deterministic (eval-mode) logits_BxLxV."""
    return build_model(cfg).apply({"params": params}, x_BxL)


def traced_hparams(cfg: ModelConfig) -> dict[str, jax.Array]:
    """The TRACED_FIELDS of cfg as float32 arrays: the values cfg.shape() leaves out."""
    return {f: jnp.asarray(getattr(cfg, f), jnp.float32) for f in TRACED_FIELDS}


def loss_fn(cfg: ModelConfig, params: Any, aux: Any, x_BxL: jax.Array, y_BxL: jax.Array,
            dropout_key: jax.Array | None = None, hparams: Mapping[str, jax.Array] | None = None,
            ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Training loss (nats) and metrics; metrics['ce_bits'] is the LM cross-entropy in bits.

    Dropout applies only given dropout_key, at hparams['dropout'] (traced: any rate, 0 included,
    runs one program) or, without hparams, at cfg.dropout (a constant; 0 means no dropout at all).
    """
    rate = None
    if dropout_key is not None:
        rate = cfg.dropout if hparams is None else hparams["dropout"]
        rate = None if isinstance(rate, (int, float)) and rate == 0 else rate
    rngs = {"dropout": dropout_key} if rate is not None else {}
    model = build_model(cfg)
    if cfg.family == "jepa":
        logits, pred = model.apply({"params": params}, x_BxL, dropout_rate=rate, rngs=rngs,
                                   method=JepaLM.train_outputs)
        target = Encoder(cfg).apply({"params": aux["ema"]}, x_BxL)
        lat = latent_loss(pred, target, cfg.jepa_horizon)
    else:
        logits = model.apply({"params": params}, x_BxL, dropout_rate=rate, rngs=rngs)
        lat = jnp.zeros((), jnp.float32)
    ce_bits = jnp.mean(token_bits(logits, y_BxL))
    ce_nats = ce_bits * math.log(2.0)
    loss = ce_nats + cfg.jepa_lambda * lat if cfg.family == "jepa" else ce_nats
    return loss, {"loss": loss, "ce_bits": ce_bits, "latent": lat}


def update_aux(cfg: ModelConfig, aux: Any, params: Any, hparams: Mapping[str, jax.Array] | None = None) -> Any:
    """Post-step update of non-trained state: the jepa target encoder follows an EMA.

    The decay is hparams['ema_beta'] (traced) or, without hparams, cfg.ema_beta.
    """
    if cfg.family == "jepa":
        beta = cfg.ema_beta if hparams is None else hparams["ema_beta"]
        return {"ema": ema_update(aux["ema"], params["encoder"], beta)}
    return aux


def count_params(tree: Any) -> int:
    return int(sum(x.size for x in jax.tree_util.tree_leaves(tree)))


def non_embedding_params(cfg: ModelConfig, params: Any | None = None) -> int:
    """Trainable parameters outside the embedding tables (the usual LM size proxy)."""
    if params is None:
        params = jax.eval_shape(lambda k: init_params(cfg, k)[0], jax.random.PRNGKey(0))
    leaves = jax.tree_util.tree_leaves_with_path(params)
    return int(sum(v.size for p, v in leaves if mup.role_of(str(p[-1].key)) is not mup.Role.EMBEDDING))


def intermediates(cfg: ModelConfig, params: Any, x_BxL: jax.Array) -> dict[str, jax.Array]:
    """Mean |activation| of every recorded layer (embedding, each branch, final hidden, logits)."""
    _, state = build_model(cfg).apply({"params": params}, x_BxL, mutable=["intermediates"])
    out = {}
    for path, v in jax.tree_util.tree_leaves_with_path(state["intermediates"]):
        keys = [str(getattr(k, "key", getattr(k, "idx", k))) for k in path]
        keys = [k for k in keys if not k.isdigit() and not k.endswith("_res") and k != "encoder"]
        out["/".join(keys)] = v
    return out
