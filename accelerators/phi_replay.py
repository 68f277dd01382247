"""V5 in a replay: the phi-grid sampler over a recorded table (phi arm = the phi stratum, full-grid arm = the uniform).

A recorded table holds a sample of each family's phi-grid (its phi stratum) and of the full grid
minus the phi-grid (its uniform stratum); the live `PhiSampler` draws from the whole phi-grid and
would ask for configs the table never recorded. `TablePhiSampler` is the same sampler over the
table's two strata: while V5 is undecided a share prereg.phi_explore_share of new configs comes
from the uniform stratum, in the same permuted blocks (`explore_slot`); once the first
ceil(phi_judge_fraction * max_trials) trials have first-rung results, the same one-sided
Mann-Whitney U at alpha / bonferroni_n (`phi_verdict`) decides, once, between the phi stratum
(enabled) and the uniform stratum (disabled). A trial's arm is its config's stratum.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Sequence

import numpy as np

from accelerators.phi_grid import FIRST_RUNG, PhiState, explore_slot, judge_size, pending_verdict, phi_verdict
from igla_jax.interfaces import Proposal
from igla_jax.prereg import Prereg
from igla_jax.replay import ReplayTable, TableSpace, table_space
from igla_jax.search_space import Config
from igla_jax.verdict import Verdict


def stratum_arms(trials: Sequence[Any], need: int, phi_ids: frozenset[str]) -> tuple[tuple, tuple] | int:
    """(phi arm BPBs, uniform arm BPBs) at the first rung of the first `need` trials once all have one,
    else how many of them have one."""
    first = trials[:need]
    have = sum(1 for t in first if len(t.results) > FIRST_RUNG)
    if len(first) < need or have < need:
        return have
    bpb = [(t.config.config_id in phi_ids, t.results[FIRST_RUNG].bpb) for t in first]
    return tuple(b for on, b in bpb if on), tuple(b for on, b in bpb if not on)


@dataclasses.dataclass(frozen=True)
class TablePhiSampler:
    """Race sampler for V5 over a table's strata (see the module docstring); state is the live PhiState."""
    prereg: Prereg
    phi: TableSpace
    uniform: TableSpace
    name: str = "phi_grid"

    @classmethod
    def from_table(cls, table: ReplayTable, prereg: Prereg, *, head_dim: int = 32) -> "TablePhiSampler":
        return cls(prereg, table_space(table, strata=("phi",), head_dim=head_dim),
                   table_space(table, strata=("uniform",), head_dim=head_dim))

    @functools.cached_property
    def phi_ids(self) -> frozenset[str]:
        return frozenset(cid for (uni, _), pairs in self._ids.items() if not uni for _, cid in pairs)

    def init(self, seed: int) -> PhiState:
        return PhiState(seed=int(seed))

    def decide(self, state: PhiState, race: Any) -> tuple[Verdict | None, Verdict]:
        """(the decision, None while pending; the verdict to report now)."""
        if state.decision is not None:
            return state.decision, state.decision
        need = judge_size(self.prereg, race.config.max_trials)
        arms = stratum_arms(race.trials, need, self.phi_ids)
        if isinstance(arms, int):
            return None, pending_verdict(arms, need)
        v = phi_verdict(*arms, self.prereg)
        return v, v

    @functools.cached_property
    def _ids(self) -> dict[tuple[bool, str], tuple[tuple[Config, str], ...]]:
        """(uniform?, family) -> the stratum's (config, id) pairs (ids hashed once, not per draw)."""
        return {(uni, f): tuple((c, c.config_id) for c in cfgs)
                for uni, sp in ((False, self.phi), (True, self.uniform)) for f, cfgs in sp.by_family}

    def _draw(self, rng: np.random.Generator, family: str, uniform: bool, seen: set[str]) -> Config | None:
        """One unseen config of the arm's stratum, uniformly; None when the stratum is used up."""
        fresh = [c for c, cid in self._ids.get((uniform, family), ()) if cid not in seen]
        return fresh[int(rng.integers(len(fresh)))] if fresh else None

    def propose(self, state: PhiState, race: Any, family: str, n: int) -> Proposal:
        decision, verdict = self.decide(state, race)
        rng = np.random.default_rng([state.seed, state.draws])
        seen, out, slots = set(race.seen_ids), [], state.slots
        for _ in range(n):
            if decision is None:
                uni = explore_slot(state.seed, slots, self.prereg.phi_explore_share)
                slots += 1
                # while undecided a used-up arm falls back to the other, so the family keeps going (as live)
                got = self._draw(rng, family, uni, seen) or self._draw(rng, family, not uni, seen)
            else:
                got = self._draw(rng, family, not decision.enabled, seen)
            if got is None:
                break
            seen.add(got.config_id)
            out.append(got)
        return Proposal(PhiState(state.seed, state.draws + 1, slots, decision), tuple(out), verdict)
