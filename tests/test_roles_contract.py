"""One contract for every accelerator role (issue 12 section 1), run against every sampler, pruner and allocator.

Modelled on Optuna's shared sampler tests: whatever the role, it proposes at most n configs of
the right family and never a config the race has seen; it is deterministic (same state and race
state, same decision and state); a replayed race is identical run to run; its verdict is recorded
in the race state; and it wins on a problem with a known answer. A new accelerator joins by adding
a factory to SAMPLERS, PRUNERS or ALLOCATORS.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from accelerators.bohb import BOHBSampler
from accelerators.phi_replay import TablePhiSampler
from accelerators.ucb import UCB1Allocator
from igla_jax import curves
from igla_jax.evidence.ledger_row import CodeVersion
from igla_jax.evidence.prereg import load_prereg
from igla_jax.evidence.verdict import Verdict
from igla_jax.execution.presets import PRESETS
from igla_jax.execution.race_runner import run_replay
from igla_jax.execution.replay import synthetic_table, table_space
from igla_jax.search.interfaces import (Allocation, Allocator, Proposal, PruneDecision, Pruner, RandomSampler,
                                        RoundRobin, Sampler)
from igla_jax.search.race import Race, RaceError
from igla_jax.search.search_space import LEVER_FIELDS, sample

PR = load_prereg()
PS = PRESETS["tenth"]
V = CodeVersion("0" * 40, False)
ON = Verdict(True, math.nan, PR.alpha_per_arm, "on for the contract tests")
OFF = Verdict(False, math.nan, PR.alpha_per_arm, "off for the contract tests")
FAMS = ("attn", "jepa", "hybrid")
FAM_OFFSET = {"attn": 0.0, "hybrid": 0.05, "jepa": 0.3}


def lever_index(c) -> list[int]:
    return [list(vs).index(getattr(c, f)) for f, vs in zip(LEVER_FIELDS, PS.space.values(c.family))]


def quality(c) -> float:
    """The known answer: true top-rung BPB from three levers and the family (best: mid lr, widest, mid warmup)."""
    i = lever_index(c)
    return 2.4 + FAM_OFFSET[c.family] + 0.25 * abs(i[2] - 1) + 0.15 * (2 - i[0]) + 0.1 * abs(i[4] - 1) + 0.05 * i[6]


CFGS = [c for f in FAMS for c in sample(1, f, 80, PS.space)]
TOP = {c.config_id: quality(c) for c in CFGS}
LADDER = curves.ladder_for(PS.rungs)
TABLE = synthetic_table([(c, 7, "primary") for c in CFGS], preset="tenth", ladder=LADDER, rungs=PS.rungs,
                        primary_seed=7, stratum=lambda c: "phi" if int(c.config_id[:2], 16) % 4 == 0 else "uniform",
                        bpb=lambda c, s, step: TOP[c.config_id] + (100 / step) ** 0.5,
                        segment_s=lambda c, s, i: (LADDER[i] - ((0,) + LADDER)[i]) / 1000,
                        compile_s={curves.shape_key(c): 1.0 for c in CFGS})
UNIFORM = table_space(TABLE, strata=("uniform",))

SAMPLERS = {
    "random": lambda: RandomSampler(UNIFORM),
    "phi_table": lambda: TablePhiSampler.from_table(TABLE, PR),
    "bohb": lambda: BOHBSampler(PR, UNIFORM, ON),
    "bohb_disabled": lambda: BOHBSampler(PR, UNIFORM, OFF),
}
ALLOCATORS = {
    "round_robin": lambda: RoundRobin(),
    "ucb1": lambda: UCB1Allocator.from_prereg(PR, ON),
    "ucb1_disabled": lambda: UCB1Allocator.from_prereg(PR, OFF),
}


def _v4_pruner():
    pytest.importorskip("xgboost")
    from experiments.harness.replay_methods_v4 import v4_pruner_for_table
    return v4_pruner_for_table(TABLE, PR)


PRUNERS = {"surrogate": _v4_pruner}


def replay(seed=3, **roles):
    return run_replay(seed=seed, preset="tenth", table=TABLE, version=V, **roles)


def decisions(rows) -> list[tuple]:
    """Everything a race decided, row by row (timestamps and code version left out)."""
    return [(r["event_id"], r["status"], r["config_id"], r.get("bpb"), r.get("decided_by"), r.get("score"),
             (r.get("extra") or {}).get("train_curve")) for r in rows]


# ---------------------------------------------------------------- samplers
@pytest.fixture(scope="module", params=sorted(SAMPLERS))
def sampler_case(request):
    s = SAMPLERS[request.param]()
    return request.param, s, replay(sampler=s)


def test_sampler_contract_proposals(sampler_case):
    name, s, o = sampler_case
    assert isinstance(s, Sampler)
    ids = [t.config.config_id for t in o.state.trials]
    assert len(ids) == len(set(ids)), f"{name} proposed a config twice"
    assert all(UNIFORM.contains(t.config) or TABLE.runs.get((t.config.config_id, 7)) for t in o.state.trials)
    st = s.init(3)
    for fam in FAMS:
        for n in (1, 4):
            p = s.propose(st, o.state, fam, n)
            assert isinstance(p, Proposal) and len(p.configs) <= n
            assert all(c.family == fam and c.config_id not in o.state.seen_ids for c in p.configs)
            assert len({c.config_id for c in p.configs}) == len(p.configs)
            again = s.propose(st, o.state, fam, n)   # deterministic: same state, same race, same answer
            assert again.configs == p.configs and again.state == p.state


def test_sampler_contract_replay_is_identical(sampler_case):
    name, s, o = sampler_case
    assert decisions(replay(sampler=SAMPLERS[name]()).rows) == decisions(o.rows)


def test_sampler_contract_verdict_is_recorded(sampler_case):
    name, s, o = sampler_case
    v = getattr(s, "verdict", None)
    if name == "phi_table":   # V5 decides its verdict during the race
        assert any(n == s.name for n, _ in o.state.verdicts)
    elif v is not None:
        assert (s.name, v) in o.state.verdicts
    else:
        assert name == "random"


def test_bohb_wins_on_a_problem_with_a_known_answer():
    """After the models exist, BOHB's configs are better than uniform ones in every paired race."""
    on = BOHBSampler(PR, UNIFORM, ON)
    late = []
    for seed in range(6):
        b = replay(seed=seed, sampler=on)
        r = replay(seed=seed, sampler=RandomSampler(UNIFORM))
        assert b.state.sampler_state.model_proposals > 5
        late.append((np.mean([TOP[t.config.config_id] for t in b.state.trials[54:]]),
                     np.mean([TOP[t.config.config_id] for t in r.state.trials[54:]])))
    assert all(bq < rq for bq, rq in late), late


def test_bohb_disabled_samples_exactly_as_its_fallback():
    off = replay(sampler=BOHBSampler(PR, UNIFORM, OFF))
    rnd = replay(sampler=RandomSampler(UNIFORM))
    assert [t.config for t in off.state.trials] == [t.config for t in rnd.state.trials]


# ---------------------------------------------------------------- allocators
@pytest.fixture(scope="module", params=sorted(ALLOCATORS))
def allocator_case(request):
    a = ALLOCATORS[request.param]()
    return request.param, a, replay(allocator=a)


def test_allocator_contract(allocator_case):
    name, a, o = allocator_case
    assert isinstance(a, Allocator)
    st = a.init(FAMS)
    for avail in (FAMS, ("attn", "hybrid"), ("jepa",)):
        d = a.next_family(st, o.state, avail)
        assert isinstance(d, Allocation) and d.family in avail
        assert a.next_family(st, o.state, avail) == d
    assert decisions(replay(allocator=ALLOCATORS[name]()).rows) == decisions(o.rows)
    v = getattr(a, "verdict", None)
    if v is not None:
        assert (a.name, v) in o.state.verdicts


def test_ucb1_wins_on_a_problem_with_a_known_answer():
    """jepa is 0.3 BPB worse at every config: UCB1 starts fewer jepa trials than round robin in every race."""
    for seed in range(3):
        u = replay(seed=seed, allocator=ALLOCATORS["ucb1"]())
        r = replay(seed=seed, allocator=RoundRobin())
        n_u = sum(t.config.family == "jepa" for t in u.state.trials)
        n_r = sum(t.config.family == "jepa" for t in r.state.trials)
        assert n_u < n_r, (seed, n_u, n_r)


# ---------------------------------------------------------------- pruners
@dataclasses.dataclass(frozen=True)
class PruneAll:
    """A contract breaker: prunes every promotion, the best trial included."""
    name: str = "prune_all"

    def init(self, seed):
        return 0

    def judge(self, state, race, trial):
        from igla_jax.search.interfaces import Judgement
        return PruneDecision(state + 1, Judgement(True, 0.0, "prunes everything"))


def test_falsify_a_pruner_that_prunes_the_best_trial_is_refused():
    assert isinstance(PruneAll(), Pruner)
    with pytest.raises(RaceError, match="the best trial at rung"):
        replay(pruner=PruneAll())


@pytest.fixture(scope="module", params=sorted(PRUNERS))
def pruner_case(request):
    p = PRUNERS[request.param]()
    return request.param, p, replay(pruner=p)


def test_pruner_contract(pruner_case):
    name, p, o = pruner_case
    assert isinstance(p, Pruner)
    assert decisions(replay(pruner=PRUNERS[name]()).rows) == decisions(o.rows)
    v = getattr(p, "verdict", None)
    if v is not None:
        assert any(n == p.name for n, _ in o.state.verdicts)
    rows = [r for r in o.rows if r["status"] == "pruned" and r.get("decided_by") == p.name]
    assert all(r.get("score") is not None for r in rows)
    # deterministic on one trial
    t = next((t for t in o.state.trials if len(t.results) >= 2), None)
    if t is not None:
        st = p.init(3)
        assert p.judge(st, o.state, t) == p.judge(st, o.state, t)


def test_trials_carry_their_learning_curve_through_the_replay():
    o = replay()
    t = next(t for t in o.state.trials if len(t.results) >= 2)
    # the recorder's chunks of 32 steps: rung 1 (0-100) is 4 chunks, rung 2 (100-300: segments 100-200, 200-300) 8
    assert [len(r.train_curve) for r in t.results[:2]] == [4, 8]
    row = next(r for r in o.rows if r["status"] == "trained" and (r["extra"] or {}).get("trial_id") == t.trial_id)
    assert row["extra"]["train_curve"] == list(t.results[0].train_curve)


def test_a_result_row_carries_the_curve_back_into_the_event():
    """Live rows store the per-chunk training bits; resume rebuilds the event from the row, curve included."""
    from igla_jax.execution.rows import RowMaker, event_for, result_row
    from igla_jax.search.race_types import Train
    from igla_jax.training.train import TrialResult
    cfg = CFGS[0]
    a = Train(4, "t0001", cfg, 7, 0, 0, 100, 2700, None, "t0001/step_100", None, None)
    res = TrialResult(3.1, "ok", 100, 1000, 1.0, 0.5, 3.3, None, (4.1234567, float("nan"), 3.3))
    row = result_row(RowMaker(V, "run", "tenth"), a, res, reproduce_tol=1e-4)
    assert row.extra["train_curve"] == [4.123457, None, 3.3]
    ev = event_for(a, row.bpb, "ok", 0.5, None, row.extra["train_curve"])
    assert ev.train_curve == (4.123457, None, 3.3)
