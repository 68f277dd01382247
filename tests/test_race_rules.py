"""The race's fast paths decide exactly as the plain definitions they replace (issue: a ~2x faster replay, same bits).

Each fast path is checked against the straightforward code it stands for: `evolve` against
`dataclasses.replace`, the one-pass rung tables and the sorted candidates of `_next_promotion`
against a scan per rung, the trial lookup against a scan, the batched random draws against one
numpy call per draw, `Config.to_dict` against `dataclasses.asdict`.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from igla_jax.evidence.ledger_row import CodeVersion, LedgerRow
from igla_jax.search.anytime import fits
from igla_jax.search.frozen import evolve
from igla_jax.search.interfaces import RandomSampler, draw_fresh, draw_fresh_at
from igla_jax.search.race import Race, RaceConfig, RungDone, Start, Train
from igla_jax.search.race_rules import index_of, promotion_cutoff, reindexed, rung_index
from igla_jax.search.race_types import Counters, RaceState, RungResult, Trial, trial_index
from igla_jax.search.search_space import DEFAULT_SPACE, Config

A = DEFAULT_SPACE.config_at("attn", 5)


# ---------------------------------------------------------------- evolve
def test_evolve_equals_dataclasses_replace():
    t = Trial("t0000", A, 7, "waiting", (RungResult(0, 10, 2.0, 1.0),))
    assert evolve(t, status="running") == dataclasses.replace(t, status="running")
    c = Counters(events=3, cost_s=1.5)
    assert evolve(c, events=4) == dataclasses.replace(c, events=4) and c.events == 3   # the original is untouched
    row = LedgerRow.stamped(CodeVersion("0" * 40, False), run_id="r", config_id=A.config_id, config=A.to_dict(),
                            family="attn", seed=1, step=10, bpb=2.0, status="trained")
    new = evolve(row, note="n", extra={"a": 1})
    assert new == dataclasses.replace(row, note="n", extra={"a": 1}) and new.ts == row.ts
    assert list(vars(new)) == list(vars(dataclasses.replace(row, note="n")))   # the same field order


def test_falsify_evolve_refuses_what_replace_would_revalidate():
    rc = RaceConfig(rungs=(10, 30), eta=3, seed=1, max_trials=3, victory_seeds=(42,), reproduce_tol=1e-4)
    with pytest.raises(TypeError, match="__post_init__|more than store"):
        evolve(rc, eta=1)                       # RaceConfig validates in __post_init__: replace must re-run it
    with pytest.raises(TypeError, match="more than store"):
        evolve(A, lr=1e-3)                      # Config caches its id in the instance
    with pytest.raises(TypeError, match="no field 'nope'"):
        evolve(Counters(), nope=1)
    assert evolve(Counters(), events=1).events == 1   # a plain record passes


# ---------------------------------------------------------------- trial lookup
def test_trial_index_finds_any_order_and_misses_cleanly():
    ts = tuple(Trial(f"t{i:04d}", A, 0, "running") for i in range(5))
    assert [trial_index(ts, t.trial_id) for t in ts] == list(range(5))
    shuffled = ts[3:] + ts[:3]     # a hand-built state in another order: found by the scan
    assert [shuffled[trial_index(shuffled, t.trial_id)] for t in ts] == list(ts)
    assert trial_index(ts, "t0009") is None and trial_index(ts, "x") is None and trial_index((), "t0000") is None


# ---------------------------------------------------------------- random draws
@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31), size=st.sampled_from([1, 2, 3, 81, 243, 2187, 2**33]), n=st.integers(0, 5),
       seen_frac=st.floats(0, 0.95))
def test_batched_draws_equal_one_call_per_draw(seed, size, n, seen_frac):
    ids = [f"c{i}" for i in range(min(size, 3000))]

    @dataclasses.dataclass(frozen=True)
    class Pt:
        config_id: str

    def at(i):
        return Pt(ids[i % len(ids)])
    seen = frozenset(ids[:int(seen_frac * len(ids))])
    tries = 20 * min(size, 50)
    one = draw_fresh(np.random.default_rng([seed, 1]), lambda r: at(int(r.integers(size))), seen, n, tries)
    block = draw_fresh_at(np.random.default_rng([seed, 1]), size, at, seen, n, tries)
    assert one == block


def test_random_sampler_proposals_unchanged_by_blocks():
    """The sampler's proposals over a finite race: the block draws give what the one-at-a-time draws gave."""
    sp = RandomSampler()
    st_ = sp.init(5)
    seen: frozenset[str] = frozenset()
    race = Race(RaceConfig(rungs=(10,), eta=3, seed=5, max_trials=3, victory_seeds=(42,), reproduce_tol=1e-4)).init()
    for k in range(30):
        p = sp.propose(st_, dataclasses.replace(race, seen_ids=seen), "jepa", 2)
        rng = np.random.default_rng([st_.seed, st_.draws])
        size = sp.space.size("jepa")
        want = draw_fresh(rng, lambda r: sp.space.config_at("jepa", int(r.integers(size))), seen, 2, 20 * size)
        assert p.configs == want
        st_, seen = p.state, seen | {c.config_id for c in p.configs}


# ---------------------------------------------------------------- Config.to_dict
def test_config_to_dict_is_asdict():
    for fam in ("attn", "jepa", "hybrid"):
        c = DEFAULT_SPACE.config_at(fam, 77)
        want = dataclasses.asdict(c)
        del want["curriculum"]
        assert c.to_dict() == want and list(c.to_dict()) == list(want)
        on = dataclasses.replace(c, curriculum=True)
        assert on.to_dict() == dataclasses.asdict(on) and list(on.to_dict()) == list(dataclasses.asdict(on))


# ---------------------------------------------------------------- promotion: the fast path against a scan per rung
def _scan_next_promotion(race: Race, state: RaceState) -> Trial | None:
    """The race's promotion choice written as a scan per rung (the code before the one-pass tables)."""
    c = state.config
    draining = not race._can_start(state)
    for k in reversed(range(len(c.rungs) - 1)):
        at_k = [math.inf if t.results[k].bpb is None else t.results[k].bpb for t in state.trials
                if len(t.results) > k]
        if len(at_k) < c.eta and not draining:
            continue
        cut = promotion_cutoff(at_k, c.eta)
        cands = [t for t in state.trials if t.status == "waiting" and len(t.results) == k + 1
                 and t.results[k].bpb is not None and math.isfinite(t.results[k].bpb) and t.results[k].bpb <= cut
                 and fits(state, t)]
        if cands:
            return min(cands, key=lambda t: (t.results[k].bpb, t.trial_id))
    return None


def _bpb(cfg: Config, step: int, salt: int) -> float:
    h = int(cfg.config_id[:8], 16) ^ salt
    return 1.0 + (h % 97) / 50 + 30.0 / step + (h % 5) * 0.01   # ties on purpose: few distinct values


@dataclasses.dataclass(frozen=True)
class _Checked(Race):
    """The race, with every promotion choice it makes compared with the scan (and recorded: trial id or None)."""
    seen: list = dataclasses.field(default_factory=list, compare=False)

    def _next_promotion(self, state: RaceState) -> Trial | None:
        got = super()._next_promotion(state)
        assert got == _scan_next_promotion(self, state)
        carried = state.ladder is not None and state.ladder.of is state.trials
        if carried:   # the index the race kept equals the one its trials give
            fresh = index_of(state.trials, len(state.config.rungs))
            assert (state.ladder.at, state.ladder.waiting) == (fresh.at, fresh.waiting)
        self.seen.append((None if got is None else got.trial_id, carried))
        return got


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10**6), workers=st.integers(1, 6), eta=st.integers(2, 4), trials=st.integers(3, 40),
       diverge_mod=st.integers(0, 7))
def test_next_promotion_and_end_ranks_equal_the_scan(seed, workers, eta, trials, diverge_mod):
    rc = RaceConfig(rungs=(10, 30, 90, 270), eta=eta, seed=seed, max_trials=trials, victory_seeds=(42,),
                    reproduce_tol=1e-4, workers=workers, confirm=False)
    race = _Checked(rc)
    state, acts = race.step(race.init(), Start())
    pending = [a for a in acts if isinstance(a, Train)]
    while pending and state.phase == "asha":
        a = pending.pop(0 if seed % 2 else -1)     # results arrive out of order
        bad = diverge_mod and int(a.config.config_id[:4], 16) % 11 < diverge_mod and a.rung > 0
        ev = RungDone(a.action_id, a.trial_id, a.rung, a.to_step, None if bad else _bpb(a.config, a.to_step, seed),
                      1.0, "diverged" if bad else "ok")
        state, acts = race.step(state, ev)
        pending += [x for x in acts if isinstance(x, Train)]
    assert any(x is not None for x, _ in race.seen)   # promotions were chosen (and compared), not only "none"
    assert sum(c for _, c in race.seen) >= len(race.seen) - 1   # every read but the first (no trial yet) kept its index
    for p in (x for x in acts if getattr(x, "decided_by", None) == "asha"):   # the end's ranks: a count per trial
        t = state.trial(p.trial_id)
        k = len(t.results) - 1
        at_k = [math.inf if x.results[k].bpb is None else x.results[k].bpb for x in state.trials if len(x.results) > k]
        assert f"(rank {1 + sum(b < p.bpb for b in at_k)} of {len(at_k)} " in p.reason


def test_rung_index_matches_its_definition_and_a_hand_built_state_is_reindexed():
    ts = (Trial("t0000", A, 0, "waiting", (RungResult(0, 10, 2.0, 1.0),)),
          Trial("t0001", A, 0, "diverged", (RungResult(0, 10, None, 1.0),)),
          Trial("t0002", A, 0, "waiting", (RungResult(0, 10, 1.0, 1.0), RungResult(1, 30, 0.9, 1.0))),
          Trial("t0003", A, 0, "running", (RungResult(0, 10, 3.0, 1.0),)))
    idx = index_of(ts, 3)
    assert idx.at == ((1.0, 2.0, 3.0, math.inf), (0.9,), ()) and idx.waiting == (((2.0, "t0000"),), ((0.9, "t0002"),), ())
    rc = RaceConfig(rungs=(10, 30, 90), eta=3, seed=1, max_trials=9, victory_seeds=(42,), reproduce_tol=1e-4)
    start = Race(rc).init()
    hand = dataclasses.replace(start, trials=ts)   # carries no index for these trials: it is rebuilt
    assert rung_index(hand).at == idx.at and rung_index(hand).of is ts


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 3), st.sampled_from(["waiting", "running", "pruned"]),
                          st.sampled_from([1.0, 2.0, 2.5, None])), min_size=1, max_size=30))
def test_reindexed_equals_the_index_rebuilt(changes):
    """Any sequence of trial changes (results grown or cut, statuses, diverged results), applied one by one."""
    trials = tuple(Trial(f"t{i:04d}", A, 0, "running") for i in range(6))
    idx = index_of(trials, 3)
    for i, n, status, b in changes:
        old = trials[i]
        res = tuple(RungResult(k, 10 * (k + 1), b if k == n - 1 else 1.5 + k, 1.0) for k in range(n))
        new = dataclasses.replace(old, status=status, results=res)
        trials = trials[:i] + (new,) + trials[i + 1:]
        idx = reindexed(idx, [(old, new)], trials)
        fresh = index_of(trials, 3)
        assert (idx.at, idx.waiting, idx.of) == (fresh.at, fresh.waiting, trials)
