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

from accelerators.phi_grid import ArmSampler, first_rung_arms
from igla_jax.evidence.prereg import Prereg
from igla_jax.execution.replay import ReplayTable, TableSpace, table_space
from igla_jax.search.search_space import Config


def stratum_arms(trials: Sequence[Any], need: int, phi_ids: frozenset[str]) -> tuple[tuple, tuple] | int:
    """first_rung_arms with the arm of a trial = whether its config is in the phi stratum."""
    return first_rung_arms(trials, need, lambda c: c.config_id in phi_ids)


@dataclasses.dataclass(frozen=True)
class TablePhiSampler(ArmSampler):
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

    def _arms(self, trials: Sequence[Any], need: int) -> tuple[tuple, tuple] | int:
        return stratum_arms(trials, need, self.phi_ids)

    @functools.cached_property
    def _ids(self) -> dict[tuple[bool, str], tuple[tuple[Config, str], ...]]:
        """(uniform?, family) -> the stratum's (config, id) pairs (ids hashed once, not per draw)."""
        return {(uni, f): tuple((c, c.config_id) for c in cfgs)
                for uni, sp in ((False, self.phi), (True, self.uniform)) for f, cfgs in sp.by_family}

    def _draw(self, rng: np.random.Generator, family: str, full: bool, seen: set[str]) -> tuple[Config, str] | None:
        """One unseen (config, id) of the arm's stratum (uniform when `full`), uniformly; None when used up."""
        fresh = [(c, cid) for c, cid in self._ids.get((full, family), ()) if cid not in seen]
        return fresh[int(rng.integers(len(fresh)))] if fresh else None
