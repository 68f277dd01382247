"""`hybrid`: attention blocks interleaved with a gated linear recurrence (associative scan)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import flax.linen as nn

from igla_jax.training.models.attn import AttnBlock
from igla_jax.training.models.config import ModelConfig
from igla_jax.training.models.layers import Embed, Mlp, Rate, Readout, Residual, dense
from igla_jax.training.models.mup import Role, pname

# Initial bias of the decay gate: sigmoid(2) ~ 0.88, a memory of ~8 bytes at initialisation.
GATE_BIAS_INIT = 2.0


def linear_recurrence(a_BxLxD: jax.Array, u_BxLxD: jax.Array) -> jax.Array:
    """h_t = a_t * h_{t-1} + u_t with h_{-1} = 0, over axis 1, by a parallel associative scan."""
    def combine(left, right):
        a_l, b_l = left
        a_r, b_r = right
        return a_l * a_r, a_r * b_l + b_r
    _, h = jax.lax.associative_scan(combine, (a_BxLxD, u_BxLxD), axis=1)
    return h


class GatedRecurrence(nn.Module):
    """Token mixer: h_t = a_t h_{t-1} + (1 - a_t) u_t, output (h * silu(g)) W_o; causal, full context."""
    cfg: ModelConfig

    @nn.compact
    def __call__(self, x_BxLxD: jax.Array) -> jax.Array:
        cfg = self.cfg
        D = cfg.width
        proj_BxLx3D = dense(cfg, 3 * D, Role.HIDDEN, "in")(x_BxLxD)
        gate_bias_D = self.param(pname("gate_bias", Role.VECTOR),
                                 nn.initializers.constant(GATE_BIAS_INIT), (D,))
        a_BxLxD = jax.nn.sigmoid(proj_BxLx3D[..., :D] + gate_bias_D)
        u_BxLxD = proj_BxLx3D[..., D:2 * D]
        g_BxLxD = proj_BxLx3D[..., 2 * D:]
        h_BxLxD = linear_recurrence(a_BxLxD, (1.0 - a_BxLxD) * u_BxLxD)
        return dense(cfg, D, Role.HIDDEN, "o")(h_BxLxD * jax.nn.silu(g_BxLxD))


class RecurrentBlock(nn.Module):
    cfg: ModelConfig

    @nn.compact
    def __call__(self, x_BxLxD: jax.Array, *, dropout_rate: Rate) -> jax.Array:
        mixer = Residual(self.cfg, GatedRecurrence(self.cfg, name="mixer"), "mixer", name="mixer_res")
        x = mixer(x_BxLxD, dropout_rate=dropout_rate)
        return Residual(self.cfg, Mlp(self.cfg, name="mlp"), "mlp", name="mlp_res")(x, dropout_rate=dropout_rate)


class HybridLM(nn.Module):
    """Even blocks attend, odd blocks recur; every block spans the whole context."""
    cfg: ModelConfig

    @nn.compact
    def __call__(self, x_BxL: jax.Array, *, dropout_rate: Rate = None) -> jax.Array:
        h = Embed(self.cfg, name="embed")(x_BxL)
        self.sow("intermediates", "embedding", jnp.mean(jnp.abs(h)))
        for i in range(self.cfg.depth):
            block = AttnBlock if i % 2 == 0 else RecurrentBlock
            h = block(self.cfg, name=f"block{i}")(h, dropout_rate=dropout_rate)
        self.sow("intermediates", "final_hidden", jnp.mean(jnp.abs(h)))
        return Readout(self.cfg, name="readout")(h)
