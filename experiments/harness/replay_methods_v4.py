"""V4 as a harness method: `asha+v4`, the race (random sampler over the uniform stratum) with the surrogate pruner.

V4 is switched on here whatever its verdict (the harness is where it is measured). The pruner is
cross-fitted on the table (`accelerators.surrogate.crossfit_pruner`): the table's configs are cut
into K = round(1 / holdout_fraction) folds and each config is judged by the model fitted without
its fold, so no replayed prune is in sample (a model fitted once on the 80 % training configs would
judge those configs on their own curves). `cheap_promotions` stays empty: V4 only vetoes, it never
promotes; its top-pruned share is reported by `experiments.studies.v4_study`.

`v4_pruner_for_table(table, prereg)` builds the same pruner for the combinations registered here:
`asha+v3+v4` (issue 12) and `asha+v3+v4+v6` (every accelerator a replay can run together).
"""
from __future__ import annotations

import functools
import math
from typing import Any

from experiments.harness.methods import register_method
from experiments.harness.replay_methods import _asha, _v3_sampler, _v6_allocator
from igla_jax.evidence.prereg import Prereg
from igla_jax.evidence.verdict import Verdict
from igla_jax.execution.replay import ReplayTable


@functools.lru_cache(maxsize=8)
def v4_pruner_for_table(table: ReplayTable, prereg: Prereg, split_seed: int = 0) -> Any:
    """The cross-fitted V4 pruner of `table`, enabled whatever its verdict (fitted once per table)."""
    from accelerators.surrogate import crossfit_pruner
    on = Verdict(True, math.nan, prereg.surrogate_top_pruned_max, "on for the harness (cross-fitted on the table)")
    return crossfit_pruner(table, prereg, on, split_seed=split_seed)[0]


def _v4(table: ReplayTable, pr: Prereg) -> Any:
    return v4_pruner_for_table(table, pr)


asha_v4 = _asha("asha+v4", lambda table, pr: None, pruner_of=_v4)
asha_v3_v4 = _asha("asha+v3+v4", _v3_sampler, pruner_of=_v4)
asha_v3_v4_v6 = _asha("asha+v3+v4+v6", _v3_sampler, _v6_allocator, pruner_of=_v4)

register_method("asha+v4", asha_v4, kind="ours",
                note="the race with the V4 surrogate pruner (cross-fitted on the table, on whatever its verdict)")
register_method("asha+v3+v4", asha_v3_v4, kind="ours", note="V3 BOHB sampling and the V4 surrogate pruner together")
register_method("asha+v3+v4+v6", asha_v3_v4_v6, kind="ours",
                note="every accelerator a replay can run together: V3, V4 and V6 (V5 is a sampler like V3; see the notes)")
