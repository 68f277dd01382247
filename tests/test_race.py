"""The pure ASHA state machine, driven by a fake executor (a pure function config, step -> bpb)."""
from __future__ import annotations

import collections
import dataclasses
import math

import pytest
from hypothesis import given, settings, strategies as st

from igla_jax.evidence.verdict import Verdict
from igla_jax.search.interfaces import (Allocation, Allocator, FilterDecision, Judgement, PruneDecision,
                                        RandomSampler, RoundRobin)
from igla_jax.search.race import (BudgetExhausted, Confirm, ConfirmDone, Finish, Prune, Race, RaceConfig, RaceError,
                                  Reproduce, ReproduceDone, RungDone, Score, Scored, Start, Train, promotable)
from igla_jax.search.search_space import Config

RUNGS = (10, 30, 90)


def quality(cfg: Config) -> float:
    """Known objective: best at lr 3e-3, width 192, depth 4, beta 0.9, dropout 0 (wd, warmup irrelevant)."""
    return (abs(math.log(cfg.lr / 3e-3)) + (192 - cfg.width) / 256 + abs(cfg.depth - 4) / 8
            + abs(cfg.beta - 0.9) + cfg.dropout)


def fake_bpb(cfg: Config, step: int, seed: int = 42) -> float:
    """Rank-preserving learning curve + a tiny seed/config-dependent wobble (deterministic)."""
    wobble = (int(cfg.config_id[:6], 16) % 1000) * 1e-7 + seed * 1e-6
    return 1.5 + quality(cfg) + 3.0 * (RUNGS[0] / step) ** 0.5 + wobble


def drive(race: Race, bpb_fn=fake_bpb, *, diverge=frozenset(), stop_after=None, scores_fn=None):
    """Runs the race FIFO like a sequential executor; returns (state, events, actions)."""
    state, acts = race.step(race.init(), Start())
    events, actions = [Start()], list(acts)
    queue = collections.deque(acts)
    while queue:
        a = queue.popleft()
        if isinstance(a, Train):
            bad = a.config.config_id in diverge
            ev = RungDone(a.action_id, a.trial_id, a.rung, a.to_step,
                          math.nan if bad else bpb_fn(a.config, a.to_step, a.seed), 1.0, "diverged" if bad else "ok")
        elif isinstance(a, Confirm):
            ev = ConfirmDone(a.action_id, a.seed, a.to_step, bpb_fn(a.config, a.to_step, a.seed), 1.0, "ok")
        elif isinstance(a, Reproduce):
            ev = ReproduceDone(a.action_id, a.seed, a.to_step, bpb_fn(a.config, a.to_step, a.seed), 1.0, "ok")
        elif isinstance(a, Score):
            ev = Scored(a.action_id, tuple(scores_fn(c) for c in a.candidates))
        else:
            continue
        if stop_after is not None and len(events) >= stop_after:
            ev = BudgetExhausted()
            queue.clear()
        state, new = race.step(state, ev)
        events.append(ev)
        actions.extend(new)
        queue.extend(new)
    return state, events, actions


def cfg(max_trials=27, **kw) -> RaceConfig:
    return RaceConfig(rungs=RUNGS, eta=3, seed=42, max_trials=max_trials, victory_seeds=(42, 43, 44),
                      reproduce_tol=1e-4, **kw)


# ---------------------------------------------------------------- promotable
def test_best_trial_always_promotable():
    for n in range(1, 12):
        results = [2.0 + 0.1 * i for i in range(n)]
        assert promotable(results, min(results), 3)
    assert not promotable([2.0, 2.1, 2.2], 2.1, 3)        # 1 better, allowed max(1, 3 // 3) = 1
    assert promotable([2.0, 2.1, 2.2, 2.3, 2.4, 2.5], 2.1, 3)  # 1 better < 6 // 3 = 2
    assert not promotable([2.0, math.inf], math.inf, 3)     # a diverged result never


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0.5, 5.0, allow_nan=False), min_size=1, max_size=40), st.integers(2, 5))
def test_promotable_property(results, eta):
    assert promotable(results, min(results), eta)
    prom = [r for r in results if promotable(results, r, eta)]
    assert all(promotable(results, r, eta) for r in results if r <= max(prom))  # downward closed
    if len(set(results)) == len(results):  # distinct values: exactly the top max(1, n // eta)
        assert sorted(prom) == sorted(results)[:max(1, len(results) // eta)]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.floats(0.5, 5.0, allow_nan=False), st.just(math.inf), st.sampled_from([2.0, 2.5])),
                min_size=1, max_size=40), st.integers(2, 5))
def test_promotion_cutoff_agrees_with_promotable(results, eta):
    """The race's one-sort cutoff decides exactly as `promotable` for every result, ties and diverged included."""
    from igla_jax.search.race import _finite_at_most, _promotion_cutoff
    cut = _promotion_cutoff(results, eta)
    assert [_finite_at_most(r, cut) for r in results] == [promotable(results, r, eta) for r in results]


# ---------------------------------------------------------------- replay & determinism
def test_replay_same_events_same_state():
    race = Race(cfg())
    state, events, actions = drive(race)
    replayed, acts2 = race.replay(events)
    assert replayed == state
    assert acts2 == tuple(actions)
    # a different executor result gives a different state: the comparison can fail
    other, _, _ = drive(race, lambda c, s, seed=42: fake_bpb(c, s, seed) + (0.01 if c.width == 64 else 0.0))
    assert other != state


def test_replay_rejects_mismatched_event():
    race = Race(cfg())
    state, acts = race.step(race.init(), Start())
    a = acts[0]
    with pytest.raises(RaceError, match="does not match"):
        race.step(state, RungDone(a.action_id, a.trial_id, a.rung, a.to_step + 1, 2.0, 1.0, "ok"))
    with pytest.raises(RaceError, match="not outstanding"):
        race.step(state, RungDone(999, a.trial_id, a.rung, a.to_step, 2.0, 1.0, "ok"))


# ---------------------------------------------------------------- selection and confirmation never share a seed
@pytest.mark.parametrize("seed", [42, 43, 44, 0, 7, 123456])
def test_falsify_shared_noise_search_seed_is_never_a_victory_seed_and_confirms_are_fresh(seed):
    race = Race(dataclasses.replace(cfg(max_trials=9), seed=seed, search_seed=None))
    state, _, actions = drive(race)
    search = state.config.search_seed
    assert search not in (42, 43, 44)
    assert {a.seed for a in actions if isinstance(a, Train)} == {search}
    assert all(t.seed == search for t in state.trials)
    # victory runs: one from-scratch Confirm on each victory seed, none of them the selected run
    assert sorted(a.seed for a in actions if isinstance(a, Confirm)) == [42, 43, 44]
    rep = [a for a in actions if isinstance(a, Reproduce)]
    assert len(rep) == 1 and rep[0].seed == search
    champ = state.trial(state.champion)
    assert rep[0].original_bpb == champ.results[-1].bpb


def test_search_seed_is_derived_deterministically_and_can_be_pinned():
    from igla_jax.search.race_types import derive_search_seed
    assert derive_search_seed(42, (42, 43, 44)) == derive_search_seed(42, (42, 43, 44))
    assert derive_search_seed(42, (42, 43, 44)) != derive_search_seed(43, (42, 43, 44))
    h = derive_search_seed(42, ())
    assert derive_search_seed(42, (h,)) == h + 1  # stepped past a victory seed
    with pytest.raises(ValueError, match="must not be a victory seed"):
        dataclasses.replace(cfg(), search_seed=43)


# ---------------------------------------------------------------- ASHA on a known objective
def test_asha_finds_best_sampled_config_and_halves():
    race = Race(cfg(max_trials=27))
    state, _, actions = drive(race)
    assert state.phase == "finished"
    trials = state.trials
    assert len(trials) == 27
    best = min(trials, key=lambda t: fake_bpb(t.config, RUNGS[-1]))
    assert state.champion == best.trial_id
    occ = [sum(1 for t in trials if len(t.results) > k) for k in range(3)]
    assert occ[0] == 27 and occ[1] < 27 and occ[2] < occ[1], occ
    for k in range(2):  # about 1/eta per rung; async ASHA's early promotions add some (Li et al. 2020)
        assert occ[k] // 3 <= occ[k + 1] <= 1.5 * (occ[k] // 3) + 1, occ
    fin = [a for a in actions if isinstance(a, Finish)]
    assert len(fin) == 1 and fin[0].summary.reproduced is True and fin[0].summary.stopped_by == "complete"


def test_promotion_continues_from_checkpoint_never_retrains():
    race = Race(cfg(max_trials=9))
    _, _, actions = drive(race)
    by_trial = collections.defaultdict(list)
    for a in actions:
        if isinstance(a, Train):
            by_trial[a.trial_id].append(a)
    assert any(len(v) == 3 for v in by_trial.values())
    for tid, trains in by_trial.items():
        assert trains[0].from_step == 0 and trains[0].from_checkpoint is None
        for prev, nxt in zip(trains, trains[1:]):
            assert nxt.from_step == prev.to_step and nxt.from_checkpoint == prev.save_checkpoint
            assert nxt.from_checkpoint == f"{tid}/step_{prev.to_step}" and nxt.promoted_by == "asha"
        assert all(t.total_steps == RUNGS[-1] for t in trains)
        assert trains[-1].to_step != RUNGS[-1] or trains[-1].save_checkpoint is None


def test_confirm_and_reproduce_after_final_rung():
    race = Race(cfg(max_trials=9))
    state, events, actions = drive(race)
    champ = state.trial(state.champion)
    conf = [a for a in actions if isinstance(a, Confirm)]
    rep = [a for a in actions if isinstance(a, Reproduce)]
    assert sorted(a.seed for a in conf) == [42, 43, 44] and all(a.config == champ.config for a in conf)
    assert all(a.to_step == RUNGS[-1] for a in conf + rep)
    assert len(rep) == 1 and rep[0].seed == state.config.search_seed
    assert rep[0].original_bpb == champ.results[-1].bpb
    for drift, ok in ((5e-5, True), (1e-3, False)):  # reproduce_tol is 1e-4
        evs = [dataclasses.replace(e, bpb=e.bpb + drift) if isinstance(e, ReproduceDone) else e for e in events]
        _, acts = race.replay(evs)
        assert acts[-1].summary.reproduced is ok, drift


def test_diverged_trial_is_pruned_and_race_goes_on():
    race = Race(cfg(max_trials=9))
    clean, _, _ = drive(race)
    victim = clean.trial(clean.champion).config.config_id
    state, _, actions = drive(race, diverge=frozenset({victim}))
    v = [t for t in state.trials if t.config.config_id == victim][0]
    assert v.status == "diverged" and v.results[-1].bpb is None
    assert state.counters.diverged == 1 and state.phase == "finished"
    assert state.champion is not None and state.champion != v.trial_id
    assert all(not (isinstance(a, Train) and a.trial_id == v.trial_id and a.rung > 0) for a in actions)


def test_deadline_stop_finishes_cleanly():
    race = Race(cfg(max_trials=27))
    state, events, actions = drive(race, stop_after=6)
    assert isinstance(events[-1], BudgetExhausted)
    assert state.phase == "finished" and state.stopped_by == "deadline" and state.outstanding == ()
    assert isinstance(actions[-1], Finish) and actions[-1].summary.stopped_by == "deadline"
    with pytest.raises(RaceError, match="after the race finished"):
        race.step(state, Start())
    full, _, _ = drive(race)
    assert full.stopped_by == "complete" and full.counters.started > state.counters.started


def test_workers_keep_several_trains_outstanding():
    race = Race(cfg(max_trials=12, workers=4))
    _, acts = race.step(race.init(), Start())
    assert sum(isinstance(a, Train) for a in acts) == 4
    state, _, _ = drive(race)
    assert state.phase == "finished" and state.champion is not None


def test_sampler_never_repeats_and_round_robin_families():
    race = Race(cfg(max_trials=30))
    state, _, _ = drive(race)
    ids = [t.config.config_id for t in state.trials]
    assert len(ids) == len(set(ids))
    assert [t.config.family for t in state.trials[:6]] == ["attn", "jepa", "hybrid"] * 2


# ---------------------------------------------------------------- plug-ins
@dataclasses.dataclass(frozen=True)
class KeepTop:
    """Test filter: keeps the best 20 % by score (higher = better)."""
    verdict: Verdict = Verdict(True, 0.9, 0.5, "test filter")
    name: str = "test_filter"

    def score(self, configs):
        return tuple(-quality(c) for c in configs)

    def init(self, seed):
        return 0

    def keep(self, state, configs, scores):
        k = max(1, round(0.2 * len(scores)))
        cut = sorted(scores, reverse=True)[k - 1]
        return FilterDecision(state + 1, tuple(s >= cut for s in scores))


def test_filter_drops_with_score_and_decided_by():
    race = Race(cfg(max_trials=6, score_pool=10), filter=KeepTop())
    state, _, actions = drive(race, scores_fn=lambda c: -quality(c))
    prunes = [a for a in actions if isinstance(a, Prune) and a.decided_by == "test_filter"]
    scores = [a for a in actions if isinstance(a, Score)]
    assert scores and len(prunes) >= 8 * len(scores) - 2
    assert all(p.trial_id == "" and p.step == 0 and math.isfinite(p.score) for p in prunes)
    started = {t.config.config_id for t in state.trials}
    assert not started & {p.config.config_id for p in prunes}
    assert ("test_filter", KeepTop().verdict) in state.verdicts
    # a disabled filter is never consulted
    off = Race(cfg(max_trials=6), filter=KeepTop(verdict=Verdict(False, 0.1, 0.5, "failed study")))
    _, _, acts_off = drive(off, scores_fn=lambda c: 0.0)
    assert not any(isinstance(a, Score) for a in acts_off)


@dataclasses.dataclass(frozen=True)
class PruneWide:
    name: str = "test_pruner"

    def init(self, seed):
        return 0

    def judge(self, state, race, trial):
        return PruneDecision(state + 1, Judgement(trial.config.width == 64, float(trial.config.width), "width 64 vetoed"))


def test_pruner_vetoes_promotion():
    race = Race(cfg(max_trials=27), pruner=PruneWide())
    state, _, actions = drive(race)
    vetoed = [a for a in actions if isinstance(a, Prune) and a.decided_by == "test_pruner"]
    assert vetoed and all(a.config.width == 64 and a.score == 64.0 for a in vetoed)
    assert all(not (isinstance(a, Train) and a.rung > 0 and a.config.width == 64) for a in actions)


def test_end_of_race_prunes_record_asha_score():
    race = Race(cfg(max_trials=9))
    state, _, actions = drive(race)
    asha = [a for a in actions if isinstance(a, Prune) and a.decided_by == "asha"]
    assert asha and all(a.score == a.bpb and "rank" in a.reason for a in asha)
    assert all(t.status in ("done", "pruned", "diverged") for t in state.trials)


def test_random_sampler_is_deterministic_per_seed():
    a = drive(Race(cfg(max_trials=6)))[0]
    b = drive(Race(cfg(max_trials=6)))[0]
    c = drive(Race(dataclasses.replace(cfg(max_trials=6), seed=7)))[0]
    ids = lambda s: [t.config.config_id for t in s.trials]  # noqa: E731
    assert ids(a) == ids(b) and ids(a) != ids(c)
    assert isinstance(Race(cfg()).sampler, RandomSampler)


# ---------------------------------------------------------------- allocator: told what is available, credited for what ran
@dataclasses.dataclass(frozen=True)
class DrySampler:
    """Test sampler: random, except that family `dry` has no config left (exhausted on first ask)."""
    dry: str = "jepa"
    name: str = "dry_sampler"

    def init(self, seed):
        return RandomSampler().init(seed)

    def propose(self, state, race, family, n):
        prop = RandomSampler().propose(state, race, family, n)
        return dataclasses.replace(prop, configs=()) if family == self.dry else prop


@dataclasses.dataclass(frozen=True)
class Stubborn:
    """Test allocator: always asks for one family, exhausted or not."""
    family: str = "jepa"
    name: str = "stubborn"

    def init(self, families):
        return 0

    def next_family(self, state, race, available):
        return Allocation(state + 1, self.family)

    def credit(self, state, family):
        return state


@dataclasses.dataclass(frozen=True)
class Counting:
    """Test allocator: round robin, recording every choice and every credit."""
    name: str = "counting"

    def init(self, families):
        return (RoundRobin().init(families), (), ())  # (cursor, chosen, credited)

    def next_family(self, state, race, available):
        a = RoundRobin().next_family(state[0], race, available)
        return Allocation((a.state, state[1] + (a.family,), state[2]), a.family)

    def credit(self, state, family):
        return state[:2] + (state[2] + (family,),)


def test_falsify_allocator_choosing_an_exhausted_family_raises():
    assert isinstance(Stubborn(), Allocator)
    race = Race(cfg(max_trials=6), sampler=DrySampler(), allocator=Stubborn())
    with pytest.raises(RaceError, match=r"allocator 'stubborn' chose family 'jepa' \(exhausted\)"):
        drive(race)
    with pytest.raises(RaceError, match="not a family of the race"):
        drive(Race(cfg(max_trials=6), allocator=Stubborn(family="rnn")))


def test_falsify_allocator_credits_equal_the_families_that_started():
    race = Race(cfg(max_trials=9, score_pool=10), sampler=DrySampler(), filter=KeepTop(), allocator=Counting())
    state, _, actions = drive(race, scores_fn=lambda c: -quality(c))
    _, chosen, credited = state.allocator_state
    assert credited == tuple(t.config.family for t in state.trials) and len(credited) == 9
    assert "jepa" in chosen and "jepa" not in credited  # chosen, ran nothing, never credited
    assert len(chosen) < len(credited)  # the filter's queue starts several trials per choice
    assert sum(isinstance(a, Score) for a in actions) < 9


def test_round_robin_skips_exhausted_families_and_cycles_the_rest():
    state, _, _ = drive(Race(cfg(max_trials=8), sampler=DrySampler()))
    assert [t.config.family for t in state.trials] == ["attn", "hybrid"] * 4
    state, _, _ = drive(Race(cfg(max_trials=6), sampler=DrySampler(dry="attn")))
    assert [t.config.family for t in state.trials] == ["jepa", "hybrid"] * 3
    rr, race = RoundRobin(), Race(cfg()).init()
    assert rr.next_family(0, race, ("attn", "jepa", "hybrid")) == Allocation(1, "attn")
    assert rr.next_family(1, race, ("attn", "hybrid")) == Allocation(3, "hybrid")
    assert rr.next_family(3, race, ("attn", "hybrid")) == Allocation(4, "attn")
    assert rr.credit(5, "attn") == 5
