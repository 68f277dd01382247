"""V5 phi-grid: 128 real configs per family, the trinity identity, the arms, and the falsifier."""
from __future__ import annotations

import collections
import math
import types

import numpy as np
import pytest

import accelerators.phi_grid as pg
from accelerators.phi_grid import (PHI, PhiSampler, PhiState, arms_disjoint, judge_size, ledger_phi_verdict,
                                   on_phi_grid, phi_grid, phi_values, phi_verdict, trinity_identity_holds)
from igla_jax.evidence.prereg import load_prereg
from igla_jax.evidence.verdict import Verdict
from igla_jax.execution.presets import PRESETS
from igla_jax.search.race import Race, RaceConfig
from igla_jax.search.search_space import DEFAULT_SPACE, Config, SearchSpace, SearchSpaceError, full_grid
from igla_jax.training.models.config import FAMILIES

PREREG = load_prereg()
SMOKE = SearchSpace(width=(16,), depth=(2,), dropout=(0.0,), ema_beta=(0.99,), head_dim=8)


@pytest.mark.parametrize("family", FAMILIES)
def test_phi_grid_enumerates_all_128(family):
    grid = phi_grid(family)
    assert len(grid) == 128 and len({c.config_id for c in grid}) == 128
    values = phi_values(family)
    assert all(len(set(v)) == 2 for v in values)
    fields = ("width", "depth", "lr", "beta", "warmup", "wd", "dropout")
    for f, vals in zip(fields, values):
        assert collections.Counter(getattr(c, f) for c in grid) == {vals[0]: 64, vals[1]: 64}
    assert all(on_phi_grid(c) for c in grid)


def test_phi_values_and_rounding():
    attn = dict(zip(("width", "depth", "lr", "beta", "warmup", "wd", "dropout"), phi_values("attn")))
    assert attn["width"] == (64, 192) and all(w % DEFAULT_SPACE.head_dim == 0 for w in attn["width"])
    assert attn["depth"] == (2, 6)
    assert attn["lr"] == (0.00185, 0.00485)          # 3e-3 * PHI^-1, 3e-3 * PHI to 3 significant digits
    assert attn["lr"][1] == float(f"{3e-3 * PHI:.3g}")
    assert attn["beta"] == (0.838, 0.9382)           # 1 - 0.1 * PHI^{+1, -1}
    assert attn["dropout"] == (0.0618, 0.162)
    jepa_beta = phi_values("jepa")[3]
    assert jepa_beta == (0.99353, 0.99753) and all(0 < b < 1 for b in jepa_beta)


def test_trinity_identity_holds(monkeypatch):
    assert trinity_identity_holds()
    assert math.isclose(PHI**2 + PHI**-2, 3.0, rel_tol=0, abs_tol=1e-12)
    # the check can fail: phi off by 1e-9 breaks both identities by ~1e-9, far above the default 1e-12
    monkeypatch.setattr(pg, "PHI", PHI + 1e-9)
    assert not trinity_identity_holds()
    monkeypatch.setattr(pg, "PHI", 1.6)
    assert not trinity_identity_holds()


def test_pinned_levers_stay_pinned():
    assert len(phi_grid("attn", SMOKE)) == 2**4 and len(phi_grid("jepa", SMOKE)) == 2**3
    assert {c.width for c in phi_grid("hybrid", SMOKE)} == {16}


# ---------------------------------------------------------------- the two arms
@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_full_grid_never_on_phi_grid_in_race_presets(preset):
    """A trial's arm is on_phi_grid(config): no full-grid config of any race preset may be on the phi-grid."""
    space = PRESETS[preset].space
    for fam in FAMILIES:
        assert arms_disjoint(fam, space)
        assert not any(on_phi_grid(c, space) for c in full_grid(fam, space))


def test_width_depth_only_space_keeps_arms_apart():
    # only width and depth free: their phi values {64, 192} x {2, 6} are full-grid values, so the arms
    # would overlap; the sampler's full-grid arm rejects those on-grid draws
    space = SearchSpace(lr=(3e-3,), beta1=(0.9,), ema_beta=(0.996,), warmup=(0.02,), wd=(0.05,), dropout=(0.1,))
    assert not arms_disjoint("attn", space)
    assert sum(on_phi_grid(c, space) for c in full_grid("attn", space)) == 4
    s = PhiSampler(PREREG, space=space)
    race = types.SimpleNamespace(seen_ids=frozenset(), trials=(), config=types.SimpleNamespace(max_trials=10))
    drawn = [s._draw(np.random.default_rng(i), "attn", True, set())[0] for i in range(60)]
    assert drawn and not any(on_phi_grid(c, space) for c in drawn)
    assert s.propose(s.init(0), race, "attn", 5).configs  # and the sampler still proposes


def test_all_pinned_space_refused():
    space = SearchSpace(width=(64,), depth=(2,), lr=(3e-3,), beta1=(0.9,), ema_beta=(0.996,), warmup=(0.02,),
                        wd=(0.05,), dropout=(0.1,))
    with pytest.raises(SearchSpaceError, match="no comparison arm"):
        PhiSampler(PREREG, space=space)


J = judge_size(PREREG, 27)  # trials judged in a 27-trial race


def test_judge_size_is_preregistered():
    assert PREREG.alpha_per_arm == pytest.approx(0.01 / 7)
    # golden: phi_judge_fraction 0.55 (pre-registration v2); update only with an amendment
    assert judge_size(PREREG, 27) == 15 and judge_size(PREREG, 81) == 45 and judge_size(PREREG, 4) == 3


# ---------------------------------------------------------------- the falsifier on the evidence
GOOD_PHI, GOOD_FULL = [1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6], [2.0, 2.1, 2.2, 2.3, 2.4, 2.5, 2.6]


def test_falsify_phi_useless_grid_disabled():
    # violating case: the phi arm is no better (interleaved with the full-grid arm)
    v = phi_verdict([2.0, 2.2, 2.4, 2.6, 2.8, 3.0, 3.2], [2.1, 2.3, 2.5, 2.7, 2.9, 3.1, 3.3], PREREG)
    assert not v.enabled and v.threshold == PREREG.alpha_per_arm and v.statistic > 0.1
    for needle in ("Mann-Whitney U", "alpha / bonferroni_n = 0.01 / 7", "phi arm n = 7 median 2.6000",
                   "full-grid arm n = 7 median 2.7000", "V5 disabled"):
        assert needle in v.reason, needle
    # phi arm worse: also disabled (one-sided)
    assert not phi_verdict(GOOD_FULL, GOOD_PHI, PREREG).enabled


def test_falsify_phi_good_grid_kept():
    # clean twin: every phi result beats every full-grid one; exact p = 1 / C(14, 7) = 2.9e-4 < 0.01 / 7
    v = phi_verdict(GOOD_PHI, GOOD_FULL, PREREG)
    assert v.enabled and v.statistic == pytest.approx(1 / math.comb(14, 7)) and "V5 enabled" in v.reason


def test_falsify_phi_level_is_alpha_per_arm():
    full = [7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0]
    # U = 3: exact p = 7 / 3432 = 0.00204, between alpha / 7 = 0.00143 and alpha = 0.01 -> disabled
    v = phi_verdict([1, 2, 3, 4, 5, 6, 9.5], full, PREREG)
    assert PREREG.alpha_per_arm < v.statistic < PREREG.alpha and not v.enabled
    # U = 2: exact p = 4 / 3432 = 0.00117 < alpha / 7 -> enabled
    v = phi_verdict([1, 2, 3, 4, 5, 6, 8.5], full, PREREG)
    assert v.statistic < PREREG.alpha_per_arm and v.enabled


def test_falsify_phi_empty_arm_and_diverged():
    v = phi_verdict([], GOOD_FULL, PREREG)
    assert not v.enabled and "an arm is empty" in v.reason and v.statistic == 1.0
    assert not phi_verdict(GOOD_PHI, [], PREREG).enabled
    # diverged (None, nan) ranks worst: a diverged phi arm loses, a diverged full-grid arm loses
    assert not phi_verdict([None] * 7, GOOD_FULL, PREREG).enabled
    v = phi_verdict(GOOD_PHI, [None, math.nan, math.inf, None, None, None, None], PREREG)
    assert v.enabled and "median inf" in v.reason


# ---------------------------------------------------------------- the sampler in the race
def _cfg(seed: int, max_trials: int = 27) -> RaceConfig:
    return RaceConfig(rungs=(10, 30, 90), eta=3, seed=seed, max_trials=max_trials, victory_seeds=(seed,),
                      reproduce_tol=1e-4, confirm=False)


def _noise(cfg: Config) -> float:
    return int(cfg.config_id[:6], 16) / 16**6  # deterministic, in [0, 1)


def useless(cfg: Config, step: int, seed: int = 0) -> float:
    """BPB independent of the grid: the phi claim is false."""
    return 3.0 + _noise(cfg) + 10.0 / step


def good(cfg: Config, step: int, seed: int = 0) -> float:
    """Every phi-grid config beats every other: the phi claim holds."""
    return (2.0 if on_phi_grid(cfg) else 3.0) + 0.5 * _noise(cfg) + 10.0 / step


def _verdict(state) -> Verdict:
    (name, v), = state.verdicts
    assert name == "phi_grid"
    return v


def test_falsify_phi_useless_grid_disabled_in_race():
    from test_race import drive  # the fake sequential executor of the race tests
    state, _, _ = drive(Race(_cfg(4), sampler=PhiSampler(PREREG)), useless)
    v = _verdict(state)
    assert not v.enabled and "not significant" in v.reason and state.sampler_state.disabled
    on = [on_phi_grid(t.config) for t in state.trials]
    assert 3 <= sum(on[:J]) <= J - 3             # both arms sampled before the judge point
    assert len(on) == 27 and not any(on[J:])    # after it the full grid only
    assert state.sampler_state.decision == v


def test_falsify_phi_good_grid_kept_in_race():
    from test_race import drive
    state, _, _ = drive(Race(_cfg(3), sampler=PhiSampler(PREREG)), good)
    v = _verdict(state)
    assert v.enabled and "significant" in v.reason and not state.sampler_state.disabled
    on = [on_phi_grid(t.config) for t in state.trials]
    assert J // 2 - 2 <= on[:J].count(False) <= J // 2 + 2  # balanced arms: half of the undecided draws explore
    assert len(on) == 27 and all(on[J:])        # after the judge point the phi-grid only


def test_phi_pending_before_the_judge_point():
    from test_race import drive
    race = Race(_cfg(5), sampler=PhiSampler(PREREG))
    # stop after 13 first-rung results (Start + 13 trials + promotions in between): still pending
    state, events, _ = drive(race, good, stop_after=14)
    have = sum(1 for t in state.trials if t.results)
    assert have < J
    v = _verdict(state)
    assert v.enabled and state.sampler_state.decision is None
    assert v.reason.startswith("pending") and f"{J - v.statistic:g} still needed" in v.reason
    assert v.threshold == J


def test_phi_decision_is_sticky():
    s = PhiSampler(PREREG)
    trials = tuple(types.SimpleNamespace(config=c, results=(types.SimpleNamespace(bpb=b),))
                   for c, b in [(phi_grid("attn")[i], 1.0 + 0.01 * i) for i in range(J - 7)]
                   + [(full_grid("attn")[50 * i], 3.0) for i in range(7)])
    race = types.SimpleNamespace(seen_ids=frozenset(), trials=trials, config=types.SimpleNamespace(max_trials=27))
    fresh = s.propose(s.init(1), race, "attn", 1)
    assert fresh.state.decision is not None and fresh.state.decision.enabled  # this evidence enables V5
    earlier = Verdict(False, 0.5, PREREG.alpha_per_arm, "decided earlier")
    p = s.propose(PhiState(1, 3, 10, earlier), race, "attn", 4)
    assert p.state.decision == earlier and p.verdict == earlier
    assert not any(on_phi_grid(c) for c in p.configs)  # disabled: the full grid only


def test_phi_sampler_deterministic_and_replayable():
    from test_race import drive
    race = Race(_cfg(6), sampler=PhiSampler(PREREG))
    a, events, _ = drive(race, useless)
    b, _, _ = drive(race, useless)
    assert a == b and race.replay(events)[0] == a
    c, _, _ = drive(Race(_cfg(7), sampler=PhiSampler(PREREG)), useless)
    assert [t.config for t in c.trials] != [t.config for t in a.trials]  # the seed matters


def _ledger(state) -> list[dict]:
    """Ledger-shaped rows of a race state as the executor writes them (results, promotions, a confirm)."""
    rows = []
    for t in state.trials:
        for k, r in enumerate(t.results):
            base = {"config": t.config.to_dict(), "config_id": t.config.config_id, "seed": t.seed}
            if k:
                rows.append({**base, "step": t.results[k - 1].step, "bpb": t.results[k - 1].bpb,
                             "status": "promoted", "extra": {"trial_id": t.trial_id, "rung": k - 1}})
            rows.append({**base, "step": r.step, "bpb": r.bpb, "status": "trained" if r.bpb else "diverged",
                         "extra": {"trial_id": t.trial_id, "rung": k, "action": "train"}})
    best = state.trials[0]
    rows.append({"config": best.config.to_dict(), "step": 90, "bpb": 0.1, "seed": 43, "status": "confirmed",
                 "extra": {"trial_id": best.trial_id, "action": "confirm"}})
    return rows[::-1]  # order must not matter


@pytest.mark.parametrize("bpb_fn", [useless, good])
def test_ledger_verdict_matches_the_race(bpb_fn):
    from test_race import drive
    race = Race(_cfg(8), sampler=PhiSampler(PREREG))
    first, _, _ = drive(race, bpb_fn)
    diverge = frozenset({first.trials[1].config.config_id, first.trials[2].config.config_id})
    state, _, _ = drive(race, bpb_fn, diverge=diverge)
    assert sum(t.results[0].bpb is None for t in state.trials[:J]) == 2  # diverged results are evidence too
    v = ledger_phi_verdict(_ledger(state), PREREG, max_trials=27)
    assert v == state.sampler_state.decision == _verdict(state)
    partial = [r for r in _ledger(state) if r["extra"].get("trial_id", "t9") < "t0010"]
    p = ledger_phi_verdict(partial, PREREG, max_trials=27)
    assert p.enabled and p.reason.startswith("pending") and f"{J - 10} still needed" in p.reason
