"""The race's search space: family in {attn, jepa, hybrid} x seven levers G1-G7, three values each.

3^7 = 2,187 configs per family, 6,561 in all. A `Config` is the family plus one value per lever; its
`config_id` is the first 12 hex digits of the sha256 of its canonical JSON (sorted keys, ints as
ints, floats as Python's shortest round-trip repr), so it is stable across runs and machines.

| lever | field    | attn / hybrid values     | jepa values               | why it matters for a tiny char LM |
|-------|----------|--------------------------|---------------------------|-----------------------------------|
| G1    | width    | 64, 128, 192             | same                      | capacity; multiples of head_dim 32 (2, 4, 6 heads); 192 x 6 layers is ~2.7 M params, the top of what 2 CPU cores train |
| G2    | depth    | 2, 4, 6                  | same                      | capacity vs optimisation ease at a few thousand steps |
| G3    | lr       | 1e-3, 3e-3, 1e-2         | same                      | base Adam lr at d_base = 128; muP scales hidden lrs by d_base / width so the optimum should not move with G1 |
| G4    | beta     | Adam beta1 0.8, 0.9, 0.95 | latent-target EMA beta 0.99, 0.996, 0.999 (Adam beta1 fixed 0.9) | momentum sets the effective averaging window at small batch; for jepa the target encoder's EMA is the lever that decides whether the latent loss helps or collapses |
| G5    | warmup   | 0.0, 0.02, 0.1           | same                      | fraction of the lr horizon spent warming up; short runs are sensitive to it |
| G6    | wd       | 0.0, 0.05, 0.2           | same                      | decoupled (AdamW) weight decay; muP keeps lr x wd constant across width |
| G7    | dropout  | 0.0, 0.1, 0.2            | same                      | regulariser: 1 MB of text overfits a 2 M param model within ~10k steps (the full rungs reach 27k) |

Context is deliberately not a lever: it is fixed per race preset because the validation protocol
(`igla_jax.training.data.validation_windows`) scores each byte with at most `context` bytes of history, so
configs with different contexts would be compared on different evaluation windows; it also sets
the cost per step, which ASHA's equal-step rungs assume comparable.

V7 (the online curriculum, `igla_jax.training.step.curriculum_select`) is not a lever but a per-race static
option: `Config.curriculum` is False by default and then absent from `to_dict` and the id, so every
existing id, ledger and recorded curve keeps its meaning; a config trained with the curriculum has
`"curriculum": true` in its dict and so its own id.

Presets may shrink the space (smaller widths and depths on CPU) by passing another `SearchSpace`.
The full and quick presets keep three values per lever; the smoke preset pins the levers that
change the compiled program (width, depth, dropout, the jepa EMA beta) to one value each, so a
smoke race compiles one program per family and runs in seconds.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import itertools
import json
from typing import Any, Iterator, Mapping

import numpy as np

from igla_jax.training.models.config import FAMILIES, ModelConfig

JEPA_BETA1 = 0.9  # Adam beta1 for the jepa family, whose G4 lever is the EMA beta instead
LEVER_IDS = ("G1", "G2", "G3", "G4", "G5", "G6", "G7")
LEVER_FIELDS = ("width", "depth", "lr", "beta", "warmup", "wd", "dropout")
_INT_FIELDS = ("width", "depth")
# Adam beta2 of every race trial (not a lever).
RACE_BETA2 = 0.99


class SearchSpaceError(ValueError):
    """A config or search-space value is invalid; the message names it and where it came from."""


@dataclasses.dataclass(frozen=True)
class Config:
    """One point of the search space: the family plus one value per lever (see module table)."""
    family: str
    width: int
    depth: int
    lr: float
    beta: float
    warmup: float
    wd: float
    dropout: float
    curriculum: bool = dataclasses.field(default=False, kw_only=True)   # V7; in the dict and id only when on

    def __post_init__(self) -> None:
        if not isinstance(self.curriculum, (bool, np.bool_)):
            raise SearchSpaceError(f"Config.curriculum={self.curriculum!r}: must be true or false")
        object.__setattr__(self, "curriculum", bool(self.curriculum))
        if self.family not in FAMILIES:
            raise SearchSpaceError(f"Config.family={self.family!r}: choose one of {', '.join(FAMILIES)}")
        for f in _INT_FIELDS:
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise SearchSpaceError(f"Config.{f}={v!r}: must be a positive integer")
            object.__setattr__(self, f, int(v))
        for f in ("lr", "beta", "warmup", "wd", "dropout"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)):
                raise SearchSpaceError(f"Config.{f}={v!r}: must be a number")
            object.__setattr__(self, f, float(v))  # 0 and 0.0 must hash alike
        if not self.lr > 0:
            raise SearchSpaceError(f"Config.lr={self.lr!r}: must be > 0")
        if not 0.0 < self.beta < 1.0:
            raise SearchSpaceError(f"Config.beta={self.beta!r}: must lie in (0, 1)")
        if not 0.0 <= self.warmup < 1.0:
            raise SearchSpaceError(f"Config.warmup={self.warmup!r}: must lie in [0, 1)")
        if self.wd < 0:
            raise SearchSpaceError(f"Config.wd={self.wd!r}: must be >= 0")
        if not 0.0 <= self.dropout < 1.0:
            raise SearchSpaceError(f"Config.dropout={self.dropout!r}: must lie in [0, 1)")

    def to_dict(self) -> dict[str, Any]:
        """The fields in order, as `dataclasses.asdict` gives them (every value is a str, int, float or bool)."""
        d = {f: getattr(self, f) for f in _DICT_FIELDS}
        if self.curriculum:
            d["curriculum"] = True   # off: absent, the dict (and the id) of every config from before V7
        return d

    def canonical_json(self) -> str:
        """Sorted keys, no spaces; ints stay ints, floats use Python's shortest round-trip repr."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), allow_nan=False)

    @functools.cached_property
    def config_id(self) -> str:
        """12 hex digits of the canonical JSON's sha256; cached (the config is frozen; replays ask for it per action)."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()[:12]

    @property
    def beta1(self) -> float:
        return JEPA_BETA1 if self.family == "jepa" else self.beta

    def to_model_config(self, *, context: int, head_dim: int = 32, **overrides: Any) -> ModelConfig:
        """The core ModelConfig of this point; context and head_dim come from the race preset."""
        extra = {"ema_beta": self.beta} if self.family == "jepa" else {}
        return ModelConfig(family=self.family, width=self.width, depth=self.depth, context=context,
                           head_dim=head_dim, dropout=self.dropout, **extra, **overrides)

    def to_train_config(self, *, seed: int, total_steps: int, batch: int, **overrides: Any):
        """The core TrainConfig; total_steps is the lr-schedule horizon (the preset's final rung)."""
        from igla_jax.training.step import CurriculumConfig, TrainConfig  # lazy: the trainer pulls in optax
        if self.curriculum and "curriculum" not in overrides:
            from igla_jax.evidence.prereg import load_prereg
            overrides["curriculum"] = CurriculumConfig.from_prereg(load_prereg())
        # beta2 is not a lever; pinned to the value the committed studies (zero-cost, quick runs) used.
        return TrainConfig(lr=self.lr, beta1=self.beta1, beta2=RACE_BETA2, weight_decay=self.wd,
                           warmup_frac=self.warmup, total_steps=total_steps, batch=batch, seed=seed, **overrides)

    def short(self) -> str:
        """Compact human-readable form for tables."""
        return (f"{self.family} w{self.width} d{self.depth} lr{self.lr:g} b{self.beta:g} "
                f"wu{self.warmup:g} wd{self.wd:g} do{self.dropout:g}" + (" +curriculum" if self.curriculum else ""))


_DICT_FIELDS = tuple(f.name for f in dataclasses.fields(Config) if f.name != "curriculum")


def config_from_dict(d: Mapping[str, Any], *, source: str = "config") -> Config:
    """Parses a config dict (e.g. a ledger row's 'config'); errors name `source`."""
    keys = set(d) if isinstance(d, Mapping) else None
    want = {"family", *LEVER_FIELDS}
    if keys != want and keys != want | {"curriculum"}:
        got = sorted(keys) if keys is not None else type(d).__name__
        raise SearchSpaceError(f"{source}: a config needs exactly the keys {sorted(want)} (and \"curriculum\": true "
                               f"for a V7 config), got {got}")
    if "curriculum" in keys and d["curriculum"] is not True:
        raise SearchSpaceError(f"{source}: \"curriculum\": {d['curriculum']!r}; a config without the curriculum "
                               "omits the key (its canonical form), one with it has true")
    try:
        return Config(**dict(d))
    except SearchSpaceError as e:
        raise SearchSpaceError(f"{source}: {e}") from None


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """Three values per lever; G4 has separate values for jepa (EMA beta) and the others (beta1)."""
    width: tuple[int, ...] = (64, 128, 192)
    depth: tuple[int, ...] = (2, 4, 6)
    lr: tuple[float, ...] = (1e-3, 3e-3, 1e-2)
    beta1: tuple[float, ...] = (0.8, 0.9, 0.95)
    ema_beta: tuple[float, ...] = (0.99, 0.996, 0.999)
    warmup: tuple[float, ...] = (0.0, 0.02, 0.1)
    wd: tuple[float, ...] = (0.0, 0.05, 0.2)
    dropout: tuple[float, ...] = (0.0, 0.1, 0.2)
    head_dim: int = 32

    def __post_init__(self) -> None:
        for f in ("width", "depth", "lr", "beta1", "ema_beta", "warmup", "wd", "dropout"):
            v = tuple(getattr(self, f))
            if len(v) not in (1, 3) or len(set(v)) != len(v) or list(v) != sorted(v):
                raise SearchSpaceError(f"SearchSpace.{f}={v!r}: needs three distinct increasing values "
                                       "(or one, to pin the lever)")
            object.__setattr__(self, f, v)
        bad = [w for w in self.width if w % self.head_dim]
        if bad:
            raise SearchSpaceError(f"SearchSpace.width={self.width!r}: {bad} not multiples of "
                                   f"head_dim={self.head_dim}")
        # Building one config per extreme validates every value's range once.
        for fam in FAMILIES:
            for i in (0, -1):
                Config(fam, *(vals[i] for vals in self.values(fam)))

    def values(self, family: str) -> tuple[tuple, ...]:
        """The seven value tuples G1..G7 for `family`."""
        g4 = self.ema_beta if family == "jepa" else self.beta1
        return (self.width, self.depth, self.lr, g4, self.warmup, self.wd, self.dropout)

    def size(self, family: str) -> int:
        return int(np.prod([len(v) for v in self.values(family)]))

    def contains(self, cfg: Config) -> bool:
        vals = self.values(cfg.family)
        return all(getattr(cfg, f) in vs for f, vs in zip(LEVER_FIELDS, vals))

    def config_at(self, family: str, index: int) -> Config:
        """The index-th config of `full_grid(family)` (G1 most significant digit, base 3)."""
        vals = self.values(family)
        if not 0 <= index < self.size(family):
            raise SearchSpaceError(f"index {index} outside [0, {self.size(family)}) for family {family!r}")
        digits = []
        for vs in reversed(vals):
            index, d = divmod(index, len(vs))
            digits.append(vs[d])
        return Config(family, *reversed(digits))


DEFAULT_SPACE = SearchSpace()


def _check_family(family: str) -> None:
    if family not in FAMILIES:
        raise SearchSpaceError(f"family={family!r}: choose one of {', '.join(FAMILIES)}")


def iter_grid(family: str, space: SearchSpace = DEFAULT_SPACE) -> Iterator[Config]:
    _check_family(family)
    for combo in itertools.product(*space.values(family)):
        yield Config(family, *combo)


def full_grid(family: str, space: SearchSpace = DEFAULT_SPACE) -> list[Config]:
    """All 3^7 = 2,187 configs of `family`, in lexicographic lever order."""
    return list(iter_grid(family, space))


def sample(seed: int, family: str, n: int, space: SearchSpace = DEFAULT_SPACE) -> list[Config]:
    """n distinct configs of `family` drawn uniformly without replacement; a pure function of seed."""
    _check_family(family)
    size = space.size(family)
    if not 0 <= n <= size:
        raise SearchSpaceError(f"sample n={n}: must lie in [0, {size}] for family {family!r}")
    idx = np.random.default_rng([int(seed), FAMILIES.index(family)]).choice(size, size=n, replace=False)
    return [space.config_at(family, int(i)) for i in idx]


LEVER_TABLE = __doc__[__doc__.index("| lever"):__doc__.index("\n\nContext")]
