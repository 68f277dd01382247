"""Model configuration: a frozen dataclass validated at construction."""
from __future__ import annotations

import dataclasses

FAMILIES = ("attn", "jepa", "hybrid")
PARAMETRIZATIONS = ("mup", "sp")
# Operand dtype of the dense layers' matmuls (accumulation is always float32): "float32", the
# default every recorded result used, or "bfloat16" (issue 15: a speed option, off by default).
MATMUL_DTYPES = ("float32", "bfloat16")
# Hyperparameters the compiled programs take as traced values (TrainState.hparams), not as constants.
TRACED_FIELDS = ("dropout", "ema_beta")


class ConfigError(ValueError):
    """A configuration value a user chose is invalid; the message names it."""


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Shape and parametrization of one model; every field is validated in __post_init__."""
    family: str = "attn"
    width: int = 128
    depth: int = 4
    context: int = 64
    head_dim: int = 32
    d_base: int = 128          # muP base width: m = width / d_base
    vocab: int = 256
    param: str = "mup"         # "mup" or "sp" (standard parametrization, the coord-check control)
    mlp_ratio: int = 4
    dropout: float = 0.0       # traced: see TRACED_FIELDS and shape()
    jepa_lambda: float = 0.5   # weight of the latent loss (jepa only)
    ema_beta: float = 0.99     # target-encoder EMA decay (jepa only); traced
    jepa_horizon: int = 1      # the predictor predicts the target latent this many bytes ahead
    alpha_in: float = 1.0
    alpha_out: float = 1.0
    alpha_attn: float = 1.0
    matmul_dtype: str = "float32"   # see MATMUL_DTYPES; static (part of shape())

    def __post_init__(self) -> None:
        def bad(field: str, why: str) -> ConfigError:
            return ConfigError(f"ModelConfig.{field}={getattr(self, field)!r}: {why}")
        if self.family not in FAMILIES:
            raise bad("family", f"unknown model family; choose one of {', '.join(FAMILIES)}")
        if self.matmul_dtype not in MATMUL_DTYPES:
            raise bad("matmul_dtype", f"choose one of {', '.join(MATMUL_DTYPES)}")
        if self.param not in PARAMETRIZATIONS:
            raise bad("param", f"choose one of {', '.join(PARAMETRIZATIONS)}")
        for f in ("width", "depth", "context", "head_dim", "d_base", "vocab", "mlp_ratio", "jepa_horizon"):
            v = getattr(self, f)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise bad(f, "must be a positive integer")
        if self.width % self.head_dim:
            raise bad("width", f"must be a multiple of head_dim={self.head_dim} (heads grow with width, "
                               "the head dimension stays fixed under muP)")
        if not 0.0 <= self.dropout < 1.0:
            raise bad("dropout", "must lie in [0, 1)")
        if not 0.0 < self.ema_beta < 1.0:
            raise bad("ema_beta", "must lie in (0, 1)")
        if self.jepa_lambda < 0:
            raise bad("jepa_lambda", "must be >= 0")
        if self.family == "jepa" and self.jepa_horizon >= self.context:
            raise bad("jepa_horizon", f"must be smaller than context={self.context}")

    @property
    def heads(self) -> int:
        return self.width // self.head_dim

    def shape(self) -> "ModelConfig":
        """This config with the TRACED_FIELDS at their defaults: the static key of the compiled programs.

        Configs that differ only in traced fields share one shape, hence one compiled train step
        and one population; their values travel as arrays (igla_jax.training.models.traced_hparams).
        """
        return dataclasses.replace(self, **{f: _DEFAULTS[f] for f in TRACED_FIELDS})


_DEFAULTS = {f.name: f.default for f in dataclasses.fields(ModelConfig)}
