"""Building blocks shared by the three families: norm, causal attention, MLP, embedding, readout."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import flax.linen as nn

from igla_jax.training.models.config import ModelConfig
from igla_jax.training.models.mup import MupDense, Role, attn_scale, forward_mult, initializer, pname

# A dropout rate as the models take it: a traced array or a float in [0, 1), or None (evaluation mode).
Rate = jax.Array | float | None


def layer_norm(x_xD: jax.Array, eps: float = 1e-5) -> jax.Array:
    """Non-parametric LayerNorm: trainable gains break lr transfer (Lingle 2024)."""
    mu = jnp.mean(x_xD, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x_xD - mu), axis=-1, keepdims=True)
    return (x_xD - mu) * jax.lax.rsqrt(var + eps)


def dense(cfg: ModelConfig, features: int, role: Role, name: str) -> MupDense:
    return MupDense(features=features, role=role, parametrization=cfg.param, width=cfg.width,
                    d_base=cfg.d_base, alpha_out=cfg.alpha_out, matmul_dtype=cfg.matmul_dtype, name=name)


class Embed(nn.Module):
    """Token + learned position embedding, as a one-hot matmul (faster than a gather on CPU)."""
    cfg: ModelConfig

    @nn.compact
    def __call__(self, x_BxL: jax.Array) -> jax.Array:
        cfg = self.cfg
        init = initializer(Role.EMBEDDING, param=cfg.param, width=cfg.width)
        tok_VxD = self.param(pname("tok", Role.EMBEDDING), init, (cfg.vocab, cfg.width))
        pos_LxD = self.param(pname("pos", Role.EMBEDDING), init, (cfg.context, cfg.width))
        B, L = x_BxL.shape
        oh_NxV = jax.nn.one_hot(x_BxL.reshape(-1), cfg.vocab, dtype=tok_VxD.dtype)
        h_BxLxD = (oh_NxV @ tok_VxD).reshape(B, L, cfg.width) + pos_LxD[:L]
        mult = forward_mult(Role.EMBEDDING, param=cfg.param, width=cfg.width, d_base=cfg.d_base,
                            alpha_in=cfg.alpha_in)
        return h_BxLxD * mult


class CausalSelfAttention(nn.Module):
    """Multi-head causal attention; query zero-initialised, logits scaled per muP."""
    cfg: ModelConfig

    @nn.compact
    def __call__(self, x_BxLxD: jax.Array) -> jax.Array:
        cfg = self.cfg
        B, L, D = x_BxLxD.shape
        H, K = cfg.heads, cfg.head_dim
        def heads(t_BxLxD: jax.Array) -> jax.Array:
            return t_BxLxD.reshape(B, L, H, K).transpose(0, 2, 1, 3)
        q_BxHxLxK = heads(dense(cfg, D, Role.QUERY, "q")(x_BxLxD))
        kv_BxLx2D = dense(cfg, 2 * D, Role.HIDDEN, "kv")(x_BxLxD)
        k_BxHxLxK, v_BxHxLxK = heads(kv_BxLx2D[..., :D]), heads(kv_BxLx2D[..., D:])
        scale = attn_scale(K, param=cfg.param, alpha_attn=cfg.alpha_attn)
        s_BxHxLxL = (q_BxHxLxK @ k_BxHxLxK.transpose(0, 1, 3, 2)) * scale
        causal_LxL = jnp.tril(jnp.ones((L, L), dtype=bool))
        s_BxHxLxL = jnp.where(causal_LxL, s_BxHxLxL, jnp.finfo(s_BxHxLxL.dtype).min)
        p_BxHxLxL = jax.nn.softmax(s_BxHxLxL, axis=-1)
        o_BxLxD = (p_BxHxLxL @ v_BxHxLxK).transpose(0, 2, 1, 3).reshape(B, L, D)
        return dense(cfg, D, Role.HIDDEN, "o")(o_BxLxD)


class Mlp(nn.Module):
    cfg: ModelConfig

    @nn.compact
    def __call__(self, x_BxLxD: jax.Array) -> jax.Array:
        cfg = self.cfg
        h = jax.nn.gelu(dense(cfg, cfg.mlp_ratio * cfg.width, Role.HIDDEN, "up")(x_BxLxD))
        return dense(cfg, cfg.width, Role.HIDDEN, "down")(h)


def dropout(y: jax.Array, rate: jax.Array | float, key: jax.Array) -> jax.Array:
    """Inverted dropout at a traced rate in [0, 1): y kept with probability 1 - rate, scaled by 1 / (1 - rate).

    Only the keep mask sits in a lax.cond: at rate 0 it is all ones and no bits are drawn (drawing
    them at every rate cost 10-25 % of a step at the quick shape on 2 CPU cores), so y / 1 = y and
    the loss and gradients equal the dropout-free program's bit for bit (tests/test_models.py). The
    backward pass has no cond (one around the whole branch cost ~3 % of a reference-shape step,
    issue 15). Under vmap (a population) the cond becomes a select: the bits are drawn, the mask is
    all ones and the scale 1, y exactly.
    """
    keep = 1.0 - jnp.asarray(rate, y.dtype)
    mask = jax.lax.cond(jnp.asarray(rate) > 0, lambda: jax.random.bernoulli(key, keep, y.shape),
                        lambda: jnp.ones(y.shape, bool))
    return jnp.where(mask, y / keep, jnp.zeros_like(y))


class Residual(nn.Module):
    """Pre-norm residual branch x + dropout(f(LN(x))); records mean |f| for coord checks.

    dropout_rate None is evaluation mode; otherwise the rate is a (traced) value drawn against
    the 'dropout' rng, so every rate, 0 included, runs through one compiled program.
    """
    cfg: ModelConfig
    inner: nn.Module
    tag: str

    @nn.compact
    def __call__(self, x_BxLxD: jax.Array, *, dropout_rate: Rate) -> jax.Array:
        y = self.inner(layer_norm(x_BxLxD))
        self.sow("intermediates", self.tag, jnp.mean(jnp.abs(y)))
        if dropout_rate is not None:
            y = dropout(y, dropout_rate, self.make_rng("dropout"))
        return x_BxLxD + y


class Readout(nn.Module):
    """Final norm then the zero-initialised d -> vocab readout with multiplier alpha_out / m."""
    cfg: ModelConfig

    @nn.compact
    def __call__(self, h_BxLxD: jax.Array) -> jax.Array:
        logits = dense(self.cfg, self.cfg.vocab, Role.READOUT, "head")(layer_norm(h_BxLxD))
        self.sow("intermediates", "logits", jnp.mean(jnp.abs(logits)))
        return logits
