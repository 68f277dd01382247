"""`race_default`: the race exactly as a user gets it by default, replayed: each accelerator as its verdict says.

`python -m experiments.race` by default runs V5 (the phi-grid sampler with its in-race falsifier),
and V1, V2, V3, V4 and V6 in `study` mode: each on only when its committed verdict enables it
(V7 is off by default). The replay does the same with the committed verdict files, read the way the
race reads them: V3's BOHB sampler (over the uniform stratum, falling back to V5's phi sampler),
V6's UCB1 allocator and V4's pruner (`accelerators.surrogate.live_pruner`: the committed table's
model when its verdict enables it for this preset and table, else a pruner that never prunes) are
built from their verdicts, so a disabled verdict leaves the race as it would be without them. V1
and V2 have no replay adapter (`replay_methods.other_accelerators` says why); the method refuses to
run if either one's verdict enables it, since it could then not be the default race.

Unlike `asha+v3` and the rest, nothing here is switched on for the harness: this is the method a
user's default race is judged by.
"""
from __future__ import annotations

from typing import Any

from experiments.harness.methods import register_method
from experiments.harness import replay_methods
from experiments.harness.replay_methods import _asha, _uniform_space, _v5_sampler
from experiments.harness.trajectory import HarnessError
from igla_jax.evidence.prereg import Prereg
from igla_jax.execution.replay import ReplayTable


def _sampler(table: ReplayTable, pr: Prereg) -> Any:
    from accelerators.bohb import BOHBSampler, load_v3_verdict
    # looked up at call time: a module that imported the name while a test patched it keeps no stale copy
    off = {k: v for k, v in replay_methods.other_accelerators(pr).items() if not v.startswith("off by its verdict")}
    if off:
        raise HarnessError(f"race_default: {off} (the default race would run them; a replay cannot)")
    return BOHBSampler(pr, _uniform_space(table), load_v3_verdict(pr), fallback=_v5_sampler(table, pr))


def _allocator(pr: Prereg) -> Any:
    from accelerators.ucb import UCB1Allocator, load_v6_verdict
    return UCB1Allocator.from_prereg(pr, load_v6_verdict(pr))


def _pruner(table: ReplayTable, pr: Prereg) -> Any:
    from accelerators.surrogate import live_pruner
    return live_pruner(pr, preset=str(table.preset))


race_default = _asha("race_default", _sampler, _allocator, pruner_of=_pruner)

register_method("race_default", race_default, kind="ours",
                note="the race as a user gets it by default: V5 with its falsifier, V3/V4/V6 as their committed "
                     "verdicts say (V1/V2 off by theirs, V7 off by default)")
