"""V6: the UCB1 family allocator on an analytic bandit, its falsifier, its verdict file and the replay study."""
from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from accelerators.ucb import (UCB1Allocator, V6Error, load_v6_verdict, mid_rank_rewards, regret, ucb_verdict,
                              write_v6_verdict)
from experiments.studies.v6_study import main as study_main, run_study
from igla_jax import curves
from igla_jax.evidence.ledger_row import CodeVersion
from igla_jax.evidence.prereg import load_prereg
from igla_jax.evidence.verdict import Verdict
from igla_jax.execution.presets import PRESETS
from igla_jax.execution.race_runner import run_replay
from igla_jax.execution.replay import synthetic_table
from igla_jax.search.interfaces import RoundRobin
from igla_jax.search.race import Race, RaceConfig
from igla_jax.search.race_types import RungResult, Trial
from igla_jax.search.search_space import sample

PR = load_prereg()
ON = Verdict(True, 0.0, PR.alpha_per_arm, "test: enabled")
OFF = Verdict(False, 1.0, PR.alpha_per_arm, "test: disabled")
FAMS = ("attn", "jepa", "hybrid")
V = CodeVersion("0" * 40, False)


def _state(families=FAMS):
    rc = RaceConfig(rungs=(100, 300), eta=3, seed=0, max_trials=200, victory_seeds=PR.seeds, reproduce_tol=1e-4,
                    families=families)
    return Race(rc).init()


CFGS = {f: sample(0, f, 120) for f in FAMS}


def _bandit(alloc: UCB1Allocator, n: int, means: dict[str, float], *, seed: int = 0, available=FAMS):
    """Runs the allocator n starts on a fake race whose first-rung BPB per family is N(mean, 0.05)."""
    rng = np.random.default_rng(seed)
    race = _state()
    st = alloc.init(FAMS)
    used = {f: 0 for f in FAMS}
    chosen = []
    for i in range(n):
        a = alloc.next_family(st, race, available)
        st, fam = a.state, a.family
        st = alloc.credit(st, fam)
        cfg = CFGS[fam][used[fam]]
        used[fam] += 1
        bpb = float(means[fam] + 0.05 * rng.standard_normal())
        t = Trial(f"t{i:04d}", cfg, 1, "waiting", (RungResult(0, 100, bpb, 1.0),))
        race = dataclasses.replace(race, trials=race.trials + (t,))
        chosen.append(fam)
    return chosen


def test_ucb1_concentrates_on_the_known_best_arm():
    alloc = UCB1Allocator.from_prereg(PR, ON)
    shares = []
    for seed in range(5):
        ch = _bandit(alloc, 96, {"attn": 2.5, "jepa": 2.0, "hybrid": 2.5}, seed=seed)
        shares.append(ch[24:].count("jepa") / len(ch[24:]))
    # uniform would give 1/3; 5 seeds x 72 starts: the best arm's share is well above it
    assert min(shares) > 0.45 and np.mean(shares) > 0.5, shares


def test_ucb1_explores_each_available_family_first_and_never_an_unavailable_one():
    alloc = UCB1Allocator.from_prereg(PR, ON)
    ch = _bandit(alloc, 3, {"attn": 3.0, "jepa": 2.0, "hybrid": 2.5})
    assert ch == ["attn", "jepa", "hybrid"]
    ch = _bandit(alloc, 40, {"attn": 3.0, "jepa": 2.0, "hybrid": 2.5}, available=("attn", "hybrid"))
    assert set(ch) == {"attn", "hybrid"} and ch[:2] == ["attn", "hybrid"]
    assert ch.count("hybrid") > ch.count("attn")  # the better of the two available
    with pytest.raises(ValueError, match="none of"):
        alloc.next_family(alloc.init(FAMS), _state(), ())


def test_ucb1_is_deterministic_and_replay_identical():
    alloc = UCB1Allocator.from_prereg(PR, ON)
    means = {"attn": 2.2, "jepa": 2.1, "hybrid": 2.3}
    assert _bandit(alloc, 60, means, seed=3) == _bandit(alloc, 60, means, seed=3)
    assert _bandit(alloc, 60, means, seed=3) != _bandit(alloc, 60, means, seed=4)  # it does read the rewards
    tab = _table({"attn": 0.0, "jepa": 0.3, "hybrid": 0.3}, n=40, preset="quick")
    a = run_replay(seed=1, preset="quick", table=tab, allocator=alloc, version=V)
    b = run_replay(seed=1, preset="quick", table=tab, allocator=alloc, version=V)
    assert [t.config.config_id for t in a.state.trials] == [t.config.config_id for t in b.state.trials]
    assert a.state.allocator_state == b.state.allocator_state and a.state.allocator_state.mode in ("ucb1", "explore")


def test_rewards_by_bisection_are_the_pairwise_counts_bit_for_bit():
    """mid_rank_rewards counts by bisection; the definition counts every pair: the same floats, ties and inf included."""
    rng = np.random.default_rng(3)
    for _ in range(300):
        n = int(rng.integers(1, 60))
        pool = [None, math.nan, math.inf, 1.0, 2.0] + list(rng.random(3))
        bpbs = [pool[int(i)] for i in rng.integers(len(pool), size=n)]
        x = [math.inf if b is None or math.isnan(b) else b for b in bpbs]
        want = (0.5,) if n == 1 else tuple((sum(1.0 for b in x if b > a) + 0.5 * (sum(1.0 for b in x if b == a) - 1))
                                           / (n - 1) for a in x)
        assert [v.hex() for v in mid_rank_rewards(bpbs)] == [v.hex() for v in want]


def test_ties_break_by_family_order_and_rewards_are_ranks():
    assert mid_rank_rewards([2.0, 1.0, None, 1.0]) == (1 / 3, 2.5 / 3, 0.0, 2.5 / 3)
    assert mid_rank_rewards([1.7]) == (0.5,)
    alloc = UCB1Allocator.from_prereg(PR, ON)
    ch = _bandit(alloc, 6, {f: 2.0 for f in FAMS}, seed=0)
    assert ch[:3] == list(FAMS)


def test_disabled_verdict_allocates_exactly_like_round_robin():
    alloc = UCB1Allocator.from_prereg(PR, OFF)
    assert "round robin (V6 disabled)" in alloc.report() and "DISABLED" in alloc.report()
    means = {"attn": 2.5, "jepa": 2.0, "hybrid": 2.5}
    rr = RoundRobin()
    race, st = _state(), rr.init(FAMS)
    expect = []
    for avail in (FAMS, FAMS, ("attn", "hybrid"), FAMS, ("jepa",), FAMS):
        a = rr.next_family(st, race, avail)
        st, f = a.state, a.family
        expect.append(f)
    race, ust = _state(), alloc.init(FAMS)
    got = []
    for avail in (FAMS, FAMS, ("attn", "hybrid"), FAMS, ("jepa",), FAMS):
        a = alloc.next_family(ust, race, avail)
        ust, f = a.state, a.family
        got.append(f)
    assert got == expect and ust.mode == "round_robin"
    tab = _table({"attn": 0.0, "jepa": 0.3, "hybrid": 0.3}, n=40, preset="quick")
    a = run_replay(seed=2, preset="quick", table=tab, allocator=alloc, version=V)
    b = run_replay(seed=2, preset="quick", table=tab, allocator=RoundRobin(), version=V)
    assert [t.config.config_id for t in a.state.trials] == [t.config.config_id for t in b.state.trials]
    assert _bandit(alloc, 30, means) == list(FAMS) * 10   # the rewards are ignored: the plain cycle


def test_falsify_ucb_regret_not_lower_disables_v6():
    rng = np.random.default_rng(0)
    uni = list(0.10 + 0.02 * rng.standard_normal(20))
    # violating case: UCB1's regret is not lower (higher, or the same): disabled
    assert not ucb_verdict([u + 0.01 for u in uni], uni, PR).enabled
    assert not ucb_verdict(uni, uni, PR).enabled and ucb_verdict(uni, uni, PR).statistic == 1.0
    # clean twin: clearly lower on every replay: enabled
    v = ucb_verdict([u - 0.03 for u in uni], uni, PR)
    assert v.enabled and v.statistic < PR.alpha_per_arm and v.threshold == PR.alpha_per_arm
    # lower on 9 of 9 replays: exact one-sided p = 2^-9 = 0.00195, between alpha/7 and alpha: disabled
    nine = ucb_verdict([u - 0.03 for u in uni[:9]], uni[:9], PR)
    assert PR.alpha_per_arm < nine.statistic < PR.alpha and not nine.enabled
    ten = ucb_verdict([u - 0.03 for u in uni[:10]], uni[:10], PR)   # 2^-10 < alpha/7
    assert ten.enabled
    with pytest.raises(V6Error, match="paired"):
        ucb_verdict([0.1], [0.2], PR)


def test_regret_is_the_mean_gap_over_the_last_windows():
    vals = {"attn": 2.0, "jepa": 2.3, "hybrid": 2.6}
    w, k = PR.ucb_window_trials, PR.ucb_regret_windows
    assert regret(["attn"] * (w * k), vals, window_trials=w, windows=k) == 0.0
    # an extra bad early window outside the last k, and a partial window at the end, do not count
    chosen = ["hybrid"] * w + ["attn"] * (w * k) + ["hybrid"] * (w - 1)
    assert regret(chosen, vals, window_trials=w, windows=k) == 0.0
    rr = list(FAMS) * (w * k)
    assert regret(rr[:w * k], vals, window_trials=w, windows=k) == pytest.approx(0.3, abs=0.05)
    with pytest.raises(V6Error, match="complete windows"):
        regret(["attn"] * (w * k - 1), vals, window_trials=w, windows=k)


def test_verdict_file_missing_means_not_judged_and_round_trips(tmp_path):
    v = load_v6_verdict(PR, tmp_path / "v6_verdict.json")
    assert not v.enabled and "not judged yet" in v.reason and math.isnan(v.statistic)
    p = write_v6_verdict(tmp_path / "v6_verdict.json", ON, table="t.jsonl", table_sha256="ab" * 32, prereg=PR,
                         ucb_regrets=[0.1, 0.2], uniform_regrets=[0.3, 0.4], repeats=2)
    assert load_v6_verdict(PR, p) == ON
    assert json.loads(p.read_text())["table_sha256"] == "ab" * 32
    with pytest.raises(V6Error, match="not the table in use"):
        load_v6_verdict(PR, p, table_sha256="cd" * 32)
    p.write_text("{}")
    with pytest.raises(V6Error, match="not a V6 verdict file"):
        load_v6_verdict(PR, p)


def _table(offset: dict[str, float], *, n: int = 60, preset: str = "tenth", early: dict[str, float] | None = None):
    """A table whose families differ only by `offset` (top-rung BPB) and `early` (weight of the early-step term),
    with the same config noise in each family."""
    ps = PRESETS[preset]
    cfgs = [c for f in FAMS for c in sample(0, f, n, ps.space)]
    rank = {c.config_id: i for f in FAMS for i, c in enumerate(c for c in cfgs if c.family == f)}
    ladder = curves.ladder_for(ps.rungs)

    def bpb(c, seed, step):
        w = 0.5 if early is None else early[c.family]
        return 2.0 + offset[c.family] + 0.2 * ((rank[c.config_id] * 37) % n) / n + w * (100 / step) ** 0.5

    return synthetic_table([(c, 7, "primary") for c in cfgs], bpb=bpb, preset=preset, ladder=ladder, rungs=ps.rungs,
                           segment_s=lambda c, s, i: 1.0, primary_seed=7, compile_s={curves.shape_key(c): 1.0
                                                                                     for c in cfgs})


def test_study_enables_v6_when_one_family_is_clearly_better_and_disables_it_when_equal(tmp_path):
    better = run_study(_table({"attn": 0.0, "jepa": 0.3, "hybrid": 0.3}), repeats=12, prereg=PR)
    assert better.verdict.enabled, better.verdict.line()
    assert np.mean(better.ucb_regrets) < 0.8 * np.mean(better.uniform_regrets)
    equal = run_study(_table({f: 0.0 for f in FAMS}), repeats=12, prereg=PR)
    assert not equal.verdict.enabled and equal.verdict.statistic == 1.0
    # misleading first rung: jepa is best at rung 1 and worst at the top rung, so UCB1 chases it: disabled
    misled = run_study(_table({"attn": 0.0, "jepa": 0.3, "hybrid": 0.0},
                              early={"attn": 1.0, "jepa": 0.0, "hybrid": 1.0}), repeats=12, prereg=PR)
    assert not misled.verdict.enabled and np.mean(misled.ucb_regrets) > np.mean(misled.uniform_regrets)


def test_study_cli_writes_the_verdict_file(tmp_path):
    from igla_jax.execution.replay import synthetic_rows
    ps = PRESETS["tenth"]
    cfgs = [c for f in FAMS for c in sample(0, f, 60, ps.space)]
    rows, man = synthetic_rows([(c, 7, "primary") for c in cfgs],
                               bpb=lambda c, s, st: 2.0 + (0.0 if c.family == "attn" else 0.3) + (100 / st) ** 0.5,
                               segment_s=lambda c, s, i: 1.0, ladder=curves.ladder_for(ps.rungs), rungs=ps.rungs,
                               primary_seed=7, compile_s={curves.shape_key(c): 1.0 for c in cfgs}, preset="tenth")
    t = tmp_path / "t.jsonl"
    t.write_text("".join(json.dumps(r) + "\n" for r in rows))
    curves.manifest_path(t).write_text(json.dumps(man))
    out = tmp_path / "v6.json"
    assert study_main(["--table", str(t), "--repeats", "3", "--out", str(out)]) == 0
    d = json.loads(out.read_text())
    assert d["repeats"] == 3 and len(d["ucb_regrets"]) == 3 and d["table_sha256"] == curves.file_sha256(t)
    assert not load_v6_verdict(PR, out).enabled   # 3 repeats cannot reach alpha / 7


def test_falsify_ucb_regret_power_a_placebo_is_disabled_in_almost_every_study():
    """Power, not just possibility: a useless allocator (a random family per start) is disabled in almost every
    resampled study against uniform allocation (the best round-robin phase, prereg v6)."""
    from experiments.studies.v6_power import power, regrets
    reg = regrets(_table({"attn": 0.0, "jepa": 0.3, "hybrid": 0.3}), 12, PR)
    res = power(reg, 10, 200, PR)
    assert res["placebo_disabled"] >= 0.98
    assert np.all(reg["round_robin"] <= reg["phase0"])   # the baseline is the best phase
