"""muP for Adam in one place: each parameter role gives its initialiser, forward multiplier and lr multiplier.

Table (Tensor Programs V, Yang et al. 2022; microsoft/mup), width multiplier m = d / d_base:

| role      | init                     | forward mult    | Adam lr | weight decay |
|-----------|--------------------------|-----------------|---------|--------------|
| embedding | normal, std EMBED_STD    | alpha_in        | eta     | none         |
| hidden    | normal, var 1/fan_in     | 1               | eta / m | wd * m       |
| query     | zero                     | 1               | eta / m | wd * m       |
| readout   | zero                     | alpha_out / m   | eta     | wd           |
| vector    | zero (biases, gates)     | 1               | eta     | none         |

Attention logits use alpha_attn / d_head (muP) with the head dimension fixed and heads growing
with width. Hidden weight decay is multiplied by m so that lr x wd stays constant across width.

The "sp" parametrization (the control for coord checks) uses the same models with standard
choices: every matrix var 1/fan_in (embedding std 1/sqrt(d), as flax's nn.Embed default;
readout and query not zeroed), forward multipliers 1, logits 1/sqrt(d_head), one lr and one wd.
"""
from __future__ import annotations

import enum
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import flax.linen as nn

from igla_jax.training.models.lowp import matmul_lowp

EMBED_STD = 1.0


class Role(enum.Enum):
    EMBEDDING = "embedding"
    HIDDEN = "hidden"
    QUERY = "query"
    READOUT = "readout"
    VECTOR = "vector"


# Roles are encoded in parameter names so the optimiser can recover them from the tree alone.
_SUFFIX = {Role.EMBEDDING: "_emb", Role.HIDDEN: "_w", Role.QUERY: "_wq", Role.READOUT: "_ro",
           Role.VECTOR: "_v"}


def pname(base: str, role: Role) -> str:
    """Parameter name that carries its muP role."""
    return base + _SUFFIX[role]


def role_of(name: str) -> Role:
    """Role encoded in a parameter name made by `pname`."""
    for role, suffix in sorted(_SUFFIX.items(), key=lambda kv: -len(kv[1])):
        if name.endswith(suffix):
            return role
    raise ValueError(f"parameter {name!r} carries no muP role suffix {sorted(_SUFFIX.values())}")


def width_mult(width: int, d_base: int) -> float:
    return width / d_base


def initializer(role: Role, *, param: str, width: int) -> Callable[..., jax.Array]:
    """Initialiser for a parameter of this role under 'mup' or 'sp'."""
    if role is Role.VECTOR:
        return nn.initializers.zeros
    if param == "mup":
        if role is Role.EMBEDDING:
            return nn.initializers.normal(EMBED_STD)
        if role in (Role.READOUT, Role.QUERY):
            return nn.initializers.zeros
        return nn.initializers.variance_scaling(1.0, "fan_in", "normal")
    if role is Role.EMBEDDING:
        return nn.initializers.normal(1.0 / math.sqrt(width))
    return nn.initializers.variance_scaling(1.0, "fan_in", "normal")


def forward_mult(role: Role, *, param: str, width: int, d_base: int, alpha_in: float = 1.0,
                 alpha_out: float = 1.0) -> float:
    """Constant multiplier applied to the output of a parameter of this role."""
    if param != "mup":
        return 1.0
    if role is Role.EMBEDDING:
        return alpha_in
    if role is Role.READOUT:
        return alpha_out / width_mult(width, d_base)
    return 1.0


def attn_scale(head_dim: int, *, param: str, alpha_attn: float = 1.0) -> float:
    """Multiplier of q.k: alpha_attn / d_head under muP, 1 / sqrt(d_head) under sp."""
    return alpha_attn / head_dim if param == "mup" else 1.0 / math.sqrt(head_dim)


def lr_mult(role: Role, *, param: str, width: int, d_base: int) -> float:
    """Adam lr multiplier for this role."""
    if param == "mup" and role in (Role.HIDDEN, Role.QUERY):
        return 1.0 / width_mult(width, d_base)
    return 1.0


def wd_mult(role: Role, *, param: str, width: int, d_base: int) -> float:
    """Decoupled weight decay multiplier; the optimiser multiplies it by the role's lr."""
    if role in (Role.EMBEDDING, Role.VECTOR):
        return 0.0
    if param == "mup" and role in (Role.HIDDEN, Role.QUERY):
        return width_mult(width, d_base)
    return 1.0


def _tree_by_role(params: Any, fn: Callable[[Role], float]) -> Any:
    def leaf(path, _):
        return fn(role_of(str(path[-1].key)))
    return jax.tree_util.tree_map_with_path(leaf, params)


def lr_mult_tree(params: Any, *, param: str, width: int, d_base: int) -> Any:
    """Pytree of per-parameter lr multipliers (python floats) matching params."""
    return _tree_by_role(params, lambda r: lr_mult(r, param=param, width=width, d_base=d_base))


def wd_mult_tree(params: Any, *, param: str, width: int, d_base: int) -> Any:
    """Pytree of per-parameter weight-decay multipliers (python floats) matching params."""
    return _tree_by_role(params, lambda r: wd_mult(r, param=param, width=width, d_base=d_base))


class MupDense(nn.Module):
    """Bias-free dense layer whose init and forward multiplier follow its muP role."""
    features: int
    role: Role
    parametrization: str
    width: int
    d_base: int
    name_base: str = "kernel"
    alpha_out: float = 1.0
    matmul_dtype: str = "float32"

    @nn.compact
    def __call__(self, x_xD: jax.Array) -> jax.Array:
        init = initializer(self.role, param=self.parametrization, width=self.width)
        k = self.param(pname(self.name_base, self.role), init, (x_xD.shape[-1], self.features))
        mult = forward_mult(self.role, param=self.parametrization, width=self.width,
                            d_base=self.d_base, alpha_out=self.alpha_out)
        # A 2-D matmul: XLA:CPU runs the weight gradient of a 3-D dot_general ~1.6x slower.
        x_NxD = x_xD.reshape(-1, x_xD.shape[-1])
        y_NxF = x_NxD @ k if self.matmul_dtype == "float32" else matmul_lowp(x_NxD, k, self.matmul_dtype)
        y = y_NxF.reshape(*x_xD.shape[:-1], self.features)
        return y * mult if mult != 1.0 else y
