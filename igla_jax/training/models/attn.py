"""`attn`: a pre-norm causal transformer (nanoGPT-shaped, muP-parametrized)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import flax.linen as nn

from igla_jax.training.models.config import ModelConfig
from igla_jax.training.models.layers import CausalSelfAttention, Embed, Mlp, Rate, Readout, Residual


class AttnBlock(nn.Module):
    cfg: ModelConfig

    @nn.compact
    def __call__(self, x_BxLxD: jax.Array, *, dropout_rate: Rate) -> jax.Array:
        attn = Residual(self.cfg, CausalSelfAttention(self.cfg, name="attn"), "attn", name="attn_res")
        x = attn(x_BxLxD, dropout_rate=dropout_rate)
        return Residual(self.cfg, Mlp(self.cfg, name="mlp"), "mlp", name="mlp_res")(x, dropout_rate=dropout_rate)


class Encoder(nn.Module):
    """Embedding and `depth` attention blocks: tokens x_BxL -> hidden states h_BxLxD."""
    cfg: ModelConfig

    @nn.compact
    def __call__(self, x_BxL: jax.Array, *, dropout_rate: Rate = None) -> jax.Array:
        h = Embed(self.cfg, name="embed")(x_BxL)
        self.sow("intermediates", "embedding", jnp.mean(jnp.abs(h)))
        for i in range(self.cfg.depth):
            h = AttnBlock(self.cfg, name=f"block{i}")(h, dropout_rate=dropout_rate)
        self.sow("intermediates", "final_hidden", jnp.mean(jnp.abs(h)))
        return h


class AttnLM(nn.Module):
    """Causal transformer language model: tokens -> logits_BxLxV."""
    cfg: ModelConfig

    @nn.compact
    def __call__(self, x_BxL: jax.Array, *, dropout_rate: Rate = None) -> jax.Array:
        return Readout(self.cfg, name="readout")(Encoder(self.cfg, name="encoder")(x_BxL, dropout_rate=dropout_rate))
