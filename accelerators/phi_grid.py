"""V5 phi-grid: two phi-resonant values per lever, 2^7 = 128 configs per family, and its falsifier.

For each lever the base is the middle value of the search space (`SearchSpace.values`) and the
two phi-resonant values are base * PHI^-1 and base * PHI^+1, PHI = (1 + sqrt 5) / 2, rounded:
- G1 width: nearest multiple of head_dim (at least head_dim), so heads stay whole;
- G2 depth: nearest integer (at least 1);
- G3 lr, G5 warmup, G6 wd, G7 dropout: 3 significant digits;
- G4 beta (Adam beta1, or the jepa EMA beta): phi scales the horizon 1 - beta, i.e.
  beta = 1 - (1 - base) * PHI^{-1, +1}, the 1 - beta then rounded to 3 significant digits.
With the default space that is width {64, 192}, depth {2, 6}, lr {1.85e-3, 4.85e-3}, beta1
{0.838, 0.9382}, EMA beta {0.99353, 0.99753}, warmup {0.0124, 0.0324}, wd {0.0309, 0.0809},
dropout {0.0618, 0.162}: width and depth coincide with full-grid values, the others lie between
them, so the phi-grid is a different 128-point lattice, not a corner of the full one.

Sampling (`PhiSampler`): while V5 is enabled each new config comes from the phi-grid, except a
fraction `explore` drawn from the full grid, which is what gives the falsifier evidence. Falsifier
(`phi_verdict`): every config in the top prereg.phi_top_fraction of past results must lie in the
phi-grid; once violated V5 stays disabled and the sampler draws from the full grid only.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from igla_jax.interfaces import Proposal, draw_fresh
from igla_jax.prereg import Prereg
from igla_jax.search_space import (DEFAULT_SPACE, LEVER_FIELDS, Config, SearchSpace, SearchSpaceError,
                                   config_from_dict)
from igla_jax.verdict import Verdict

PHI = (1.0 + math.sqrt(5.0)) / 2.0
EXPONENTS = (-1, 1)
RESULT_STATUSES = ("trained", "promoted", "confirmed", "reproduced")  # rows that carry a measured BPB


def trinity_identity_holds(tol: float = 1e-12) -> bool:
    """PHI^2 + PHI^-2 == 3 (the 'trinity' identity), together with PHI^2 == PHI + 1, numerically."""
    return abs(PHI**2 + PHI**-2 - 3.0) <= tol and abs(PHI**2 - (PHI + 1.0)) <= tol


def sig3(x: float) -> float:
    """x rounded to 3 significant digits."""
    return float(f"{x:.3g}")


def _phi_pair(field: str, base: float, head_dim: int) -> tuple:
    if field == "width":
        return tuple(max(head_dim, int(math.floor(base * PHI**k / head_dim + 0.5)) * head_dim) for k in EXPONENTS)
    if field == "depth":
        return tuple(max(1, int(math.floor(base * PHI**k + 0.5))) for k in EXPONENTS)
    if field == "beta":
        return tuple(round(1.0 - sig3((1.0 - base) * PHI**k), 12) for k in EXPONENTS)
    if base <= 0:
        raise SearchSpaceError(f"phi-grid: the base of lever {field} is {base!r}; phi * 0 gives no resonant values")
    return tuple(sig3(base * PHI**k) for k in EXPONENTS)


def phi_values(family: str, space: SearchSpace = DEFAULT_SPACE) -> tuple[tuple, ...]:
    """The two phi-resonant values of each lever G1..G7 for `family` (sorted; a pinned lever keeps its one)."""
    out = []
    for field, vals in zip(LEVER_FIELDS, space.values(family)):
        if len(vals) == 1:  # a lever the preset pinned stays pinned
            out.append(tuple(vals))
            continue
        pair = tuple(sorted(_phi_pair(field, vals[1], space.head_dim)))
        if pair[0] == pair[1]:
            raise SearchSpaceError(f"phi-grid: lever {field} rounds both phi values of base {vals[1]!r} to {pair[0]!r}")
        out.append(pair)
    return tuple(out)


def phi_grid(family: str, space: SearchSpace = DEFAULT_SPACE) -> list[Config]:
    """All 2^7 = 128 phi-grid configs of `family` (2^free levers when a preset pins some)."""
    return [Config(family, *combo) for combo in itertools.product(*phi_values(family, space))]


def on_phi_grid(cfg: Config, space: SearchSpace = DEFAULT_SPACE) -> bool:
    """True iff every lever value of cfg is one of its lever's two phi-resonant values."""
    return all(getattr(cfg, f) in vs for f, vs in zip(LEVER_FIELDS, phi_values(cfg.family, space)))


def ranked_results(rows: Iterable[Mapping[str, Any]]) -> list[tuple[Config, int, float]]:
    """(config, highest step, bpb there) per config, best first: further step first, then lower BPB.

    A config's BPB is taken at the highest step recorded for it (the mean over seeds at that
    step, never a minimum); rows without a finite BPB (pruned, diverged) are not results.
    """
    best: dict[str, tuple[Config, int, dict[int, float]]] = {}
    for i, r in enumerate(rows):
        b = r.get("bpb")
        if r.get("status") not in RESULT_STATUSES or not isinstance(b, (int, float)) or not math.isfinite(b):
            continue
        cfg = config_from_dict(r["config"], source=f"ledger row {i} config")
        step = int(r["step"])
        cur = best.get(cfg.config_id)
        if cur is None or step > cur[1]:
            best[cfg.config_id] = (cfg, step, {int(r["seed"]): float(b)})
        elif step == cur[1]:
            cur[2][int(r["seed"])] = float(b)
    out = [(c, s, float(np.mean(list(by_seed.values())))) for c, s, by_seed in best.values()]
    return sorted(out, key=lambda x: (-x[1], x[2], x[0].config_id))


def phi_verdict(ledger_rows: Iterable[Mapping[str, Any]], prereg: Prereg, *,
                space: SearchSpace = DEFAULT_SPACE) -> Verdict:
    """V5 falsifier: enabled iff every config in the top prereg.phi_top_fraction of results is on the phi-grid.

    statistic = fraction of the top configs on the phi-grid; threshold = 1.0. The top set has
    ceil(phi_top_fraction * n) configs of the n configs with a result. With fewer than
    ceil(1 / phi_top_fraction) results there is no top fraction to speak of yet: the verdict stays
    enabled and says so (statistic = n, threshold = that minimum).
    """
    ranked = ranked_results(ledger_rows)
    need = math.ceil(1.0 / prereg.phi_top_fraction - 1e-9)
    if len(ranked) < need:
        return Verdict(True, float(len(ranked)), float(need),
                       f"only {len(ranked)} configs with a result; the falsifier needs {need} "
                       f"(1 / phi_top_fraction) before a top {prereg.phi_top_fraction:.0%} exists")
    k = max(1, math.ceil(prereg.phi_top_fraction * len(ranked) - 1e-9))
    top = ranked[:k]
    off = [c for c, _, _ in top if not on_phi_grid(c, space)]
    frac = 1.0 - len(off) / k
    if off:
        ids = ", ".join(f"{c.config_id} ({c.short()})" for c in off[:3])
        return Verdict(False, frac, 1.0, f"{len(off)} of the top {k} of {len(ranked)} configs lie off the "
                                         f"phi-grid: {ids}; full grid restored")
    return Verdict(True, frac, 1.0, f"all top {k} of {len(ranked)} configs lie on the phi-grid")


def trial_rows(race: Any) -> list[dict[str, Any]]:
    """Ledger-shaped result rows of a race state's trials (one per rung measurement)."""
    return [{"config": t.config.to_dict(), "step": r.step, "bpb": r.bpb, "seed": t.seed, "status": "trained"}
            for t in race.trials for r in t.results if r.bpb is not None]


@dataclasses.dataclass(frozen=True)
class PhiState:
    seed: int
    draws: int = 0
    disabled: bool = False


@dataclasses.dataclass(frozen=True)
class PhiSampler:
    """Race sampler for V5: phi-grid configs (plus an `explore` share from the full grid) until falsified."""
    prereg: Prereg
    space: SearchSpace = DEFAULT_SPACE
    explore: float = 0.25
    name: str = "phi_grid"

    def __post_init__(self) -> None:
        if not 0.0 <= self.explore <= 1.0:
            raise ValueError(f"PhiSampler.explore={self.explore!r}: must lie in [0, 1]")

    def init(self, seed: int) -> PhiState:
        return PhiState(seed=int(seed))

    def propose(self, state: PhiState, race: Any, family: str, n: int) -> Proposal:
        verdict = phi_verdict(trial_rows(race), self.prereg, space=self.space)
        disabled = state.disabled or not verdict.enabled
        if disabled and verdict.enabled:  # sticky: once falsified, the full grid stays restored
            verdict = Verdict(False, verdict.statistic, verdict.threshold,
                              "falsified earlier in this race; full grid stays restored")
        grid = phi_grid(family, self.space)
        size = self.space.size(family)
        explore = 1.0 if disabled else self.explore

        def pick(rng: np.random.Generator) -> Config:
            if rng.random() < explore:
                return self.space.config_at(family, int(rng.integers(size)))
            return grid[int(rng.integers(len(grid)))]

        rng = np.random.default_rng([state.seed, state.draws])
        configs = draw_fresh(rng, pick, frozenset(race.seen_ids), n, tries=20 * (size + len(grid)))
        return Proposal(PhiState(state.seed, state.draws + 1, disabled), configs, verdict)

