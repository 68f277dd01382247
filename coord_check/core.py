"""muP coordinate check: mean |activation| of every layer vs width, a few steps on one fixed batch.

Protocol (microsoft/mup `get_coord_data`, Tensor Programs V appendix): for each width, each seed,
train on ONE fixed batch with a larger-than-usual lr and record the mean |x| of every layer's
output in the forward pass of steps t = 1..steps. As in microsoft/mup, step t's record is taken
in the forward pass *before* step t's update: t = 1 is the initialisation, t = k is after k - 1
Adam updates. Under muP every curve is flat in width; the check fits the log-log slope of
value (averaged over seeds) against width for every (layer, t).

Layers that are exactly zero at some step by construction (the zero-initialised readout makes
the logits exactly 0 at t = 1) have no logarithm; those (layer, t) cells are excluded and listed.
With a zero readout every hidden gradient is zero at the first step (jepa aside: its latent loss
reaches the encoder), so hidden layers read the same at t = 1 and t = 2.

Seeds run vmapped, so many seeds cost about as much as one on CPU. Measured results, including
the finite-width terms that make muP fail the bound at small widths, are in coord_check/README.md.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from igla_jax.training.data import get_batch, splits
from igla_jax.training.models import FAMILIES, ConfigError, ModelConfig, intermediates
from igla_jax.training.step import TrainConfig, TrainState, init_state, train_step
from igla_jax.training.train import stack_states

DEFAULT_WIDTHS = (8, 16, 32, 64)
HEAD_DIM = 8          # fixed so width 8 is one head; heads grow with width
DEPTH = 2
# Seed of the one fixed batch every width and seed trains on.
BATCH_SEED = 1234
# lr-schedule horizon far beyond the check's few steps: the lr is effectively constant.
CONSTANT_LR_HORIZON = 10**9
# Seeds trained together in one vmapped program (bounds memory at wide widths).
SEED_GROUP = 16


@dataclasses.dataclass(frozen=True)
class CoordCheckConfig:
    """What a coord check runs: families, widths, steps, seeds, parametrization, optimiser."""
    families: tuple[str, ...] = FAMILIES
    widths: tuple[int, ...] = DEFAULT_WIDTHS
    steps: int = 5
    # 32, not microsoft/mup's 2-3: with 3 seeds the slope's standard error at widths 8-64 is
    # 0.05-0.2 (measured), as large as the 0.1 bound; seeds are vmapped, so 32 cost about as much.
    seeds: int = 32
    param: str = "mup"
    lr: float = 1e-2     # larger than the race's 3e-3 default, as the protocol asks
    batch: int = 8
    context: int = 64
    depth: int = DEPTH
    head_dim: int = HEAD_DIM

    def __post_init__(self) -> None:
        def bad(field: str, why: str) -> ConfigError:
            return ConfigError(f"CoordCheckConfig.{field}={getattr(self, field)!r}: {why}")
        unknown = [f for f in self.families if f not in FAMILIES]
        if not self.families or unknown:
            raise bad("families", f"choose from {', '.join(FAMILIES)}")
        if len(self.widths) < 2 or len(set(self.widths)) != len(self.widths):
            raise bad("widths", "need at least two distinct widths to fit a slope")
        for w in self.widths:
            if w < self.head_dim or w % self.head_dim:
                raise bad("widths", f"every width must be a positive multiple of head_dim={self.head_dim}, got {w}")
        for f in ("steps", "seeds", "batch", "context", "depth"):
            if getattr(self, f) < 1:
                raise bad(f, "must be >= 1")
        if self.param not in ("mup", "sp"):
            raise bad("param", "choose mup or sp")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise bad("lr", "must be a positive finite number")

    def model(self, family: str, width: int) -> ModelConfig:
        return ModelConfig(family=family, width=width, depth=self.depth, context=self.context,
                           head_dim=self.head_dim, param=self.param)

    def train(self, seed: int) -> TrainConfig:
        # No weight decay, no warmup, constant lr: the update rule muP's table describes.
        return TrainConfig(lr=self.lr, beta2=0.99, weight_decay=0.0, warmup_frac=0.0,
                           total_steps=CONSTANT_LR_HORIZON, batch=self.batch, seed=seed)


@dataclasses.dataclass(frozen=True)
class CoordCheckResult:
    """Recorded values and fitted slopes.

    values[family][layer] is an array [seeds, widths, steps] of mean |activation|;
    slopes[family][layer] lists the log-log slope per step (None where the cell is excluded);
    seed_slopes[family][layer] is [seeds][steps] (per-seed fits, for the spread).
    """
    config: CoordCheckConfig
    values: dict[str, dict[str, np.ndarray]]
    slopes: dict[str, dict[str, list[float | None]]]
    seed_slopes: dict[str, dict[str, list[list[float | None]]]]
    excluded: tuple[tuple[str, str, int], ...]     # (family, layer, t) exactly zero somewhere

    def cells(self) -> list[tuple[str, str, int, float]]:
        """(family, layer, t, slope) for every fitted (non-excluded) cell."""
        return [(f, layer, t + 1, s) for f, layers in self.slopes.items()
                for layer, ss in layers.items() for t, s in enumerate(ss) if s is not None]

    def worst(self, n: int = 5) -> list[tuple[str, str, int, float]]:
        """The n cells with the largest |slope|, largest first."""
        return sorted(self.cells(), key=lambda c: -abs(c[3]))[:n]

    def max_abs_slope(self) -> float:
        """Largest |slope| over every fitted cell (nan if a fit is not finite, inf if none fit)."""
        cells = self.cells()
        if not cells:
            return math.inf
        s = [abs(c[3]) for c in cells]
        return math.nan if any(not math.isfinite(x) for x in s) else max(s)

    def slope_stderr(self) -> dict[str, dict[str, list[float | None]]]:
        """Standard error of each slope from the spread of the per-seed fits (None if < 2 seeds)."""
        n = self.config.seeds
        out: dict[str, dict[str, list[float | None]]] = {}
        for f, layers in self.seed_slopes.items():
            out[f] = {}
            for layer, rows in layers.items():
                col = [[r[t] for r in rows] for t in range(self.config.steps)]
                out[f][layer] = [None if n < 2 or c[0] is None else float(np.std(c, ddof=1) / math.sqrt(n))
                                 for c in col]
        return out

    def local_slopes(self) -> dict[str, dict[str, list[list[float | None]]]]:
        """Slope between each pair of consecutive widths, [step][pair]: shows where a curve flattens."""
        w = self.config.widths
        return {f: {layer: [[fit_slope(w[i:i + 2], v.mean(axis=0)[i:i + 2, t]) for i in range(len(w) - 1)]
                            for t in range(self.config.steps)] for layer, v in layers.items()}
                for f, layers in self.values.items()}

    def to_json(self) -> dict[str, Any]:
        """Every slope (4 decimals), seed-mean value (5 significant digits) and setting, as strict JSON."""
        c = self.config
        return {
            "protocol": "mean |activation| per layer; t=1 is the forward pass at initialisation "
                        "(before any update), t=k after k-1 Adam updates on one fixed batch; "
                        "slope = least-squares fit of log(seed-mean value) on log(width); "
                        "slope_stderr from the per-seed fits; local_slopes[layer][t-1][i] between "
                        "widths i and i+1; values_seed_mean[layer][width index][t-1]",
            "config": {**dataclasses.asdict(c), "families": list(c.families), "widths": list(c.widths)},
            "max_abs_slope": _rounded(self.max_abs_slope()),
            "worst": [{"family": f, "layer": l, "t": t, "slope": _rounded(s)} for f, l, t, s in self.worst(10)],
            "excluded": [{"family": f, "layer": l, "t": t, "why": "exactly zero (zero-initialised readout)"}
                         for f, l, t in self.excluded],
            "slopes": _rounded(self.slopes),
            "slope_stderr": _rounded(self.slope_stderr()),
            "local_slopes": _rounded(self.local_slopes()),
            "values_seed_mean": {f: {l: [[float(f"{x:.5g}") if math.isfinite(x) else None for x in row]
                                         for row in v.mean(axis=0).tolist()]
                                     for l, v in layers.items()} for f, layers in self.values.items()},
        }


def _rounded(x: Any) -> Any:
    """Slopes to 4 decimals (non-finite to None), recursively: strict, compact JSON."""
    if isinstance(x, float):
        return round(x, 4) if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _rounded(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_rounded(v) for v in x]
    return x


def fixed_batch(cfg: CoordCheckConfig) -> tuple[jax.Array, jax.Array]:
    """The one training batch every width and seed of a check sees."""
    return get_batch(jnp.asarray(splits()[0]), BATCH_SEED, 0, batch=cfg.batch, context=cfg.context)


@functools.partial(jax.jit, static_argnums=(2,))
def _trajectories(states_S: TrainState, batch: tuple[jax.Array, jax.Array], steps: int) -> dict[str, jax.Array]:
    """{layer: [S, steps]}: every seed's record before each of `steps` updates, seeds vmapped."""
    def one(state: TrainState) -> dict[str, jax.Array]:
        def body(st: TrainState, _):
            coords = intermediates(st.cfg, st.params, batch[0])
            st, _ = train_step(st, batch)
            return st, coords
        return jax.lax.scan(body, state, None, length=steps)[1]
    return jax.vmap(one)(states_S)


def record(model_cfg: ModelConfig, train_cfgs: Sequence[TrainConfig], batch: tuple[jax.Array, jax.Array],
           steps: int) -> dict[str, np.ndarray]:
    """{layer: [seeds, steps] mean |activation|}, one trial per train config (seed), recorded before
    each update; seeds run vmapped in groups of SEED_GROUP (tiny widths are overhead-bound on CPU)."""
    parts: list[dict[str, np.ndarray]] = []
    for i in range(0, len(train_cfgs), SEED_GROUP):
        group = [init_state(model_cfg, tc) for tc in train_cfgs[i:i + SEED_GROUP]]
        out = _trajectories(stack_states(group), batch, steps)
        parts.append({k: np.asarray(v, np.float64) for k, v in out.items()})
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def fit_slope(widths: Sequence[int], values: Sequence[float]) -> float | None:
    """Least-squares slope of log(value) on log(width); None if any value is exactly zero."""
    v = np.asarray(values, dtype=np.float64)
    if np.any(v == 0.0):
        return None
    if not np.all(np.isfinite(v)) or np.any(v < 0):
        return math.nan
    return float(np.polyfit(np.log(np.asarray(widths, np.float64)), np.log(v), 1)[0])


def _family(cfg: CoordCheckConfig, family: str, batch, progress) -> dict[str, np.ndarray]:
    per: dict[str, np.ndarray] = {}
    for wi, w in enumerate(cfg.widths):
        rec = record(cfg.model(family, w), [cfg.train(s) for s in range(cfg.seeds)], batch, cfg.steps)
        for layer, v in rec.items():
            per.setdefault(layer, np.zeros((cfg.seeds, len(cfg.widths), cfg.steps)))[:, wi] = v
        if progress is not None:
            progress(f"{family} width {w} done")
    return per


def fit_result(cfg: CoordCheckConfig, values: dict[str, dict[str, np.ndarray]]) -> CoordCheckResult:
    """Fits every (family, layer, t) slope from values[family][layer] = array [seeds, widths, steps]."""
    slopes, seed_slopes, excluded = {}, {}, []
    for family, per in values.items():
        slopes[family], seed_slopes[family] = {}, {}
        for layer, v in per.items():
            if v.shape != (cfg.seeds, len(cfg.widths), cfg.steps):
                raise ValueError(f"values[{family!r}][{layer!r}] has shape {v.shape}, expected "
                                 f"(seeds, widths, steps) = {(cfg.seeds, len(cfg.widths), cfg.steps)}")
            mean_WxT = v.mean(axis=0)
            row = [fit_slope(cfg.widths, mean_WxT[:, t]) for t in range(cfg.steps)]
            for t, s in enumerate(row):
                # a cell with a zero in any seed is excluded, even if the seed-mean is not zero
                if s is None or np.any(v[:, :, t] == 0.0):
                    row[t] = None
                    excluded.append((family, layer, t + 1))
            slopes[family][layer] = row
            seed_slopes[family][layer] = [[fit_slope(cfg.widths, v[s, :, t]) if row[t] is not None else None
                                           for t in range(cfg.steps)] for s in range(cfg.seeds)]
    return CoordCheckResult(cfg, values, slopes, seed_slopes, tuple(excluded))


def run_coord_check(cfg: CoordCheckConfig, progress=None) -> CoordCheckResult:
    """Runs the coord check for every family of cfg and fits every (layer, t) slope."""
    batch = fixed_batch(cfg)
    return fit_result(cfg, {family: _family(cfg, family, batch, progress) for family in cfg.families})
