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

Sampling (`PhiSampler`, pre-registration v2): while V5 is undecided a share prereg.phi_explore_share
of new configs comes from the full grid (the comparison arm) and the rest from the phi-grid, in
permuted blocks so the arms stay balanced. A trial's arm is `on_phi_grid(config)`: the comparison
arm never holds a phi-grid config (with any free lr/beta/warmup/wd/dropout lever no full-grid
value is a phi value; a space whose only free levers are width/depth has its on-grid draws
rejected), and a space with every lever pinned has no comparison arm and is refused.

Falsifier (`phi_verdict`), judged once: when the first ceil(phi_judge_fraction * max_trials)
trials of the race (start order) all have a first-rung result (diverged = worst), a one-sided
Mann-Whitney U test (H1: the phi arm's first-rung BPB is lower) at prereg.alpha_per_arm.
Significant -> V5 enabled and every later config comes from the phi-grid; otherwise (or an empty
arm) V5 is disabled for the rest of the race and the full grid is restored. The decision is kept
in the sampler state, so it never changes afterwards. `ledger_phi_verdict` judges the same
evidence from a finished run's ledger rows.
"""
from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from fractions import Fraction
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
from scipy.stats import mannwhitneyu

from igla_jax.evidence.ledger_row import RESULT_STATUSES
from igla_jax.evidence.prereg import Prereg
from igla_jax.evidence.verdict import Verdict
from igla_jax.search.interfaces import Proposal
from igla_jax.search.search_space import (DEFAULT_SPACE, LEVER_FIELDS, Config, SearchSpace, SearchSpaceError,
                                          config_from_dict)
from igla_jax.training.models.config import FAMILIES

PHI = (1.0 + math.sqrt(5.0)) / 2.0
EXPONENTS = (-1, 1)
FIRST_RUNG = 0  # the rung whose results are V5's evidence (every trial has one)


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


@functools.lru_cache(maxsize=64)
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


@functools.lru_cache(maxsize=64)
def _grid(family: str, space: SearchSpace) -> tuple[tuple[Config, ...], tuple[str, ...], frozenset[str]]:
    grid = tuple(Config(family, *combo) for combo in itertools.product(*phi_values(family, space)))
    ids = tuple(c.config_id for c in grid)
    return grid, ids, frozenset(ids)


def phi_grid(family: str, space: SearchSpace = DEFAULT_SPACE) -> list[Config]:
    """All 2^7 = 128 phi-grid configs of `family` (2^free levers when a preset pins some)."""
    return list(_grid(family, space)[0])


def on_phi_grid(cfg: Config, space: SearchSpace = DEFAULT_SPACE) -> bool:
    """True iff every lever value of cfg is one of its lever's two phi-resonant values."""
    return all(getattr(cfg, f) in vs for f, vs in zip(LEVER_FIELDS, phi_values(cfg.family, space)))


def arms_disjoint(family: str, space: SearchSpace = DEFAULT_SPACE) -> bool:
    """True iff no full-grid config of `family` is on the phi-grid (some lever's values share none)."""
    return any(not set(full) & set(phi) for full, phi in zip(space.values(family), phi_values(family, space)))


def judge_size(prereg: Prereg, max_trials: int | None, rungs: Sequence[int] | None = None) -> int:
    """Trials whose first-rung results V5 is judged on: ceil(phi_judge_fraction * max_trials); in a race
    without a trial cap (prereg v7) ceil(phi_judge_fraction * eta^len(rungs)), the capped race's point."""
    if max_trials is None:
        if rungs is None:
            raise ValueError("judge_size: a race without a trial cap needs its rungs (prereg v7)")
        max_trials = prereg.eta ** len(rungs)
    return max(1, math.ceil(prereg.phi_judge_fraction * max_trials - 1e-9))


def _worst(bpb: float | None) -> float:
    """A diverged result (None or non-finite) ranks last."""
    return math.inf if bpb is None or not math.isfinite(bpb) else float(bpb)


def _median(x: Sequence[float]) -> str:
    return f"{float(np.median(x)):.4f}" if x else "-"


def phi_verdict(phi_bpb: Sequence[float | None], full_bpb: Sequence[float | None], prereg: Prereg) -> Verdict:
    """V5 falsifier on the evidence: enabled iff the phi arm's first-rung BPB is significantly lower.

    One-sided Mann-Whitney U (scipy.stats.mannwhitneyu, alternative="less": H1 = phi arm lower)
    at prereg.alpha_per_arm = alpha / bonferroni_n; a diverged result (None, nan, inf) ranks worst.
    statistic = the p-value, threshold = the level; an empty arm gives p = 1 (nothing to compare).

    Args:
      phi_bpb: first-rung BPB of the trials whose config is on the phi-grid.
      full_bpb: first-rung BPB of the other trials (the full-grid comparison arm).
      prereg: the pre-registration (alpha, bonferroni_n).
    Returns:
      The Verdict; its reason names the test, the level, the arm sizes and medians.
    """
    phi, full = [_worst(b) for b in phi_bpb], [_worst(b) for b in full_bpb]
    level = prereg.alpha_per_arm
    arms = (f"phi arm n = {len(phi)} median {_median(phi)}, full-grid arm n = {len(full)} median {_median(full)}")
    where = f"alpha / bonferroni_n = {prereg.alpha:g} / {prereg.bonferroni_n} = {level:.4g}"
    if not phi or not full:
        return Verdict(False, 1.0, level, f"one-sided Mann-Whitney U at {where}: an arm is empty ({arms}); "
                                          "nothing to compare, V5 disabled, full grid restored")
    res = mannwhitneyu(phi, full, alternative="less")
    p = float(np.nan_to_num(res.pvalue, nan=1.0))
    enabled = p < level
    outcome = ("significant: V5 enabled, every new config from the phi-grid" if enabled else
               "not significant: V5 disabled, full grid restored")
    return Verdict(enabled, p, level, f"one-sided Mann-Whitney U (H1: phi arm's first-rung BPB lower), "
                                      f"U = {float(res.statistic):g}, p = {p:.4g} {'<' if enabled else '>='} "
                                      f"{where}; {arms}: {outcome}")


def pending_verdict(have: int, need: int) -> Verdict:
    """V5 before its judging point: enabled while undecided; says how many results are still needed."""
    return Verdict(True, float(have), float(need),
                   f"pending: judged once the first {need} trials have first-rung results "
                   f"({have} so far, {need - have} still needed); until then phi-grid and full-grid arms are both sampled")


def first_rung_arms(trials: Sequence[Any], need: int, is_phi: Callable[[Config], bool]) -> tuple[tuple, tuple] | int:
    """(phi arm BPBs, comparison arm BPBs) of the first `need` trials once all have a first-rung result,
    else how many of them have one."""
    first = trials[:need]
    have = sum(1 for t in first if len(t.results) > FIRST_RUNG)
    if len(first) < need or have < need:
        return have
    bpb = [(is_phi(t.config), t.results[FIRST_RUNG].bpb) for t in first]
    return tuple(b for on, b in bpb if on), tuple(b for on, b in bpb if not on)


def race_arms(trials: Sequence[Any], need: int, space: SearchSpace) -> tuple[tuple, tuple] | int:
    """first_rung_arms with the arm of a trial = whether its config lies on the phi-grid of `space`."""
    return first_rung_arms(trials, need, lambda c: on_phi_grid(c, space))


def ledger_arms(rows: Iterable[Mapping[str, Any]], need: int, space: SearchSpace) -> tuple[tuple, tuple] | int:
    """Like race_arms, from ledger rows: the first-rung result rows (extra.rung == 0, status trained or
    diverged) of the `need` lowest trial ids (the race numbers trials in start order)."""
    by_trial: dict[str, tuple[Config, float | None]] = {}
    for i, r in enumerate(rows):
        extra = r.get("extra") or {}
        if r.get("status") not in RESULT_STATUSES or extra.get("rung") != FIRST_RUNG or not extra.get("trial_id"):
            continue  # confirm/reproduce rows carry no rung; promoted rows are not result rows
        cfg = config_from_dict(r["config"], source=f"ledger row {i} config")
        by_trial.setdefault(str(extra["trial_id"]), (cfg, r.get("bpb")))
    first = [by_trial[t] for t in sorted(by_trial)[:need]]
    if len(first) < need:
        return len(first)
    return (tuple(b for c, b in first if on_phi_grid(c, space)),
            tuple(b for c, b in first if not on_phi_grid(c, space)))


def ledger_phi_verdict(rows: Iterable[Mapping[str, Any]], prereg: Prereg, *, max_trials: int | None,
                       space: SearchSpace = DEFAULT_SPACE, rungs: Sequence[int] | None = None) -> Verdict:
    """V5's verdict judged on a run's ledger rows: the same evidence and test the race used."""
    need = judge_size(prereg, max_trials, rungs)
    arms = ledger_arms(rows, need, space)
    return pending_verdict(arms, need) if isinstance(arms, int) else phi_verdict(*arms, prereg)


def explore_slot(seed: int, slot: int, share: float) -> bool:
    """True iff undecided draw number `slot` comes from the full grid: permuted blocks of size B hold
    round(share * B) full-grid slots each (B the denominator of share, limited to 100)."""
    frac = Fraction(share).limit_denominator(100)
    size, n_full = frac.denominator, frac.numerator
    block, pos = divmod(slot, size)
    return bool(np.random.default_rng([seed, block, 5]).permutation(size)[pos] < n_full)


@dataclasses.dataclass(frozen=True)
class PhiState:
    """Sampler state: seed, proposals so far, undecided draws so far (the arm schedule), the sticky decision."""
    seed: int
    draws: int = 0
    slots: int = 0
    decision: Verdict | None = None

    @property
    def disabled(self) -> bool:
        return self.decision is not None and not self.decision.enabled


class ArmSampler:
    """The V5 schedule and decision shared by the live and the table-backed sampler.

    A subclass supplies `_arms(trials, need)` (the evidence, or how many results exist) and
    `_draw(rng, family, full, seen)` (one unseen config of the phi arm, or of the comparison arm
    when `full`, as (config, id); None when that arm is used up).
    """
    prereg: Prereg

    def init(self, seed: int) -> PhiState:
        return PhiState(seed=int(seed))

    def decide(self, state: PhiState, race: Any) -> tuple[Verdict | None, Verdict]:
        """(the decision, None while pending; the verdict to report now)."""
        if state.decision is not None:
            return state.decision, state.decision
        need = judge_size(self.prereg, race.config.max_trials, getattr(race.config, "rungs", None))
        arms = self._arms(race.trials, need)
        if isinstance(arms, int):
            return None, pending_verdict(arms, need)
        v = phi_verdict(*arms, self.prereg)
        return v, v

    def propose(self, state: PhiState, race: Any, family: str, n: int) -> Proposal:
        decision, verdict = self.decide(state, race)
        rng = np.random.default_rng([state.seed, state.draws])
        seen, out, slots = set(race.seen_ids), [], state.slots
        for _ in range(n):
            if decision is None:
                full = explore_slot(state.seed, slots, self.prereg.phi_explore_share)
                slots += 1
                # while undecided an exhausted arm falls back to the other, so the family keeps going
                got = self._draw(rng, family, full, seen) or self._draw(rng, family, not full, seen)
            else:
                got = self._draw(rng, family, not decision.enabled, seen)
            if got is None:
                break
            seen.add(got[1])
            out.append(got[0])
        return Proposal(PhiState(state.seed, state.draws + 1, slots, decision), tuple(out), verdict)

    def _arms(self, trials: Sequence[Any], need: int) -> tuple[tuple, tuple] | int:
        raise NotImplementedError

    def _draw(self, rng: np.random.Generator, family: str, full: bool, seen: set[str]) -> tuple[Config, str] | None:
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class PhiSampler(ArmSampler):
    """Race sampler for V5: phi-grid and full-grid arms until judged, then one of them (see module doc)."""
    prereg: Prereg
    space: SearchSpace = DEFAULT_SPACE
    name: str = "phi_grid"

    def __post_init__(self) -> None:
        for fam in FAMILIES:
            phi_values(fam, self.space)  # a lever without two distinct phi values fails here, not mid-race
            if self.space.size(fam) == 1:
                raise SearchSpaceError(f"phi-grid: every lever of family {fam!r} is pinned in {self.space!r}: "
                                       "the phi-grid is the full grid, V5 has no comparison arm; use the random sampler")

    def _arms(self, trials: Sequence[Any], need: int) -> tuple[tuple, tuple] | int:
        return race_arms(trials, need, self.space)

    def _draw(self, rng: np.random.Generator, family: str, full: bool, seen: set[str]) -> tuple[Config, str] | None:
        """(config, id) of one unseen config of the arm, or None when 20 x its size draws find none."""
        grid, ids, id_set = _grid(family, self.space)
        if not full:
            for _ in range(20 * len(grid)):
                i = int(rng.integers(len(grid)))
                if ids[i] not in seen:
                    return grid[i], ids[i]
            return None
        size = self.space.size(family)
        for _ in range(20 * size):
            cfg = self.space.config_at(family, int(rng.integers(size)))
            cid = cfg.config_id
            if cid not in seen and cid not in id_set:  # the comparison arm never holds a phi config
                return cfg, cid
        return None
