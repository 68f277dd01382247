"""`jepa`: causal context encoder + LM head, EMA target encoder, latent predictor.

Loss = cross-entropy + lambda * latent loss. The predictor reads the context encoder's state at
position t and predicts the (stop-gradient) EMA target encoder's latent at t + horizon. The
latent loss is back-propagated into the context encoder (the earlier implementation only logged
it). BPB comes only from the LM head's cross-entropy.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import flax.linen as nn

from igla_jax.training.models.attn import Encoder
from igla_jax.training.models.config import ModelConfig
from igla_jax.training.models.layers import Rate, Readout, dense, layer_norm
from igla_jax.training.models.mup import Role


def ema_update(ema: Any, online: Any, beta: float | jax.Array) -> Any:
    """EMA step ema <- beta * ema + (1 - beta) * online; for beta in (0,1) stays within the inputs' range."""
    return jax.tree_util.tree_map(lambda e, o: beta * e + (1.0 - beta) * o, ema, online)


class Predictor(nn.Module):
    cfg: ModelConfig

    @nn.compact
    def __call__(self, h_BxLxD: jax.Array) -> jax.Array:
        h = jax.nn.gelu(dense(self.cfg, self.cfg.width, Role.HIDDEN, "up")(layer_norm(h_BxLxD)))
        return dense(self.cfg, self.cfg.width, Role.HIDDEN, "down")(h)


class JepaLM(nn.Module):
    """Context encoder with an LM head and a latent predictor."""
    cfg: ModelConfig

    def setup(self) -> None:
        self.encoder = Encoder(self.cfg)
        self.readout = Readout(self.cfg)
        self.predictor = Predictor(self.cfg)

    def __call__(self, x_BxL: jax.Array, *, dropout_rate: Rate = None) -> jax.Array:
        return self.readout(self.encoder(x_BxL, dropout_rate=dropout_rate))

    def train_outputs(self, x_BxL: jax.Array, *, dropout_rate: Rate = None) -> tuple[jax.Array, jax.Array]:
        """(logits_BxLxV, predicted target latents_BxLxD)."""
        h = self.encoder(x_BxL, dropout_rate=dropout_rate)
        return self.readout(h), self.predictor(h)


def latent_loss(pred_BxLxD: jax.Array, target_BxLxD: jax.Array, horizon: int) -> jax.Array:
    """MSE between normalised predictions at t and stop-gradient normalised targets at t + horizon."""
    p = layer_norm(pred_BxLxD[:, :-horizon])
    t = jax.lax.stop_gradient(layer_norm(target_BxLxD[:, horizon:]))
    return jnp.mean(jnp.square(p - t))
