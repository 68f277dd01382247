"""The hypothesis harness: the metric on hand-made trajectories, the bootstrap, the paired test, H(1), H(2), V5 in replay."""
from __future__ import annotations

import dataclasses
import json
import math
import sys

import numpy as np
import pytest

import experiments.harness.replay_methods as RM
from experiments import harness as H
from experiments.harness.trajectory import Trajectory
from igla_jax import curves
from igla_jax.evidence.prereg import load_prereg
from igla_jax.execution.presets import PRESETS
from igla_jax.execution.race_runner import run_replay
from igla_jax.execution.replay import synthetic_table
from igla_jax.search.search_space import sample

PR = load_prereg()
PS = PRESETS["tenth"]
CFG = sample(0, "attn", 8, PS.space)


def small_table(top: dict, extra: dict | None = None, *, stratum=lambda c: "uniform"):
    """Configs CFG[i] with top-rung BPB top[i] on the primary seed 7 (extra[i] on seed 8); cost 1 s per 100 steps."""
    extra = extra or {}
    runs = [(CFG[i], 7, "primary") for i in top] + [(CFG[i], 8, "extra") for i in extra]
    val = {(CFG[i].config_id, 7): v for i, v in top.items()} | {(CFG[i].config_id, 8): v for i, v in extra.items()}
    ladder = curves.ladder_for(PS.rungs)
    return synthetic_table(runs, preset="tenth", ladder=ladder, rungs=PS.rungs, primary_seed=7, stratum=stratum,
                           bpb=lambda c, s, step: val[(c.config_id, s)] + (2700 / step - 1) / 10,
                           segment_s=lambda c, s, i: (ladder[i] - ((0,) + ladder)[i]) / 100,
                           compile_s={curves.shape_key(c): 1.0 for c in CFG})


def traj(comps, *, method="m", repeat=0, workers=1, first=None, cheap=()):
    return Trajectory(method, repeat, workers, tuple((t, CFG[i].config_id, o) for t, i, o in comps), first,
                      tuple(CFG[i].config_id for i in cheap))


# ---------------------------------------------------------------- the metric
HAND = small_table({0: 3.0, 1: 2.9, 2: 2.62, 3: 2.5, 4: 2.7, 5: 2.8}, {0: 3.2})
# incumbent by observed BPB: c2 (observed 2.95) does not replace c1; c5 is lucky (observed 2.40, true 2.8)
HAND_COMPS = [(10, 0, 3.0), (20, 1, 2.9), (30, 2, 2.95), (40, 4, 2.69), (50, 3, 2.52), (60, 5, 2.40)]


def test_truth_is_the_mean_over_seeds_and_the_best_over_primary_configs():
    t = H.table_truth(HAND)
    assert t.true_bpb[t.index[CFG[0].config_id]] == pytest.approx(3.1)   # (3.0 + 3.2) / 2
    assert t.best == pytest.approx(2.5) and len(t.ids) == 6
    # the budget: every uniform config straight to 2700 (27 s + one 0 s evaluation) + one compile per shape
    shapes = {curves.shape_key(CFG[i]) for i in range(6)}
    assert H.budget_s(HAND, t) == pytest.approx(6 * 27 + len(shapes))


def test_metric_on_a_hand_made_trajectory():
    t = H.table_truth(HAND)
    tr = traj(HAND_COMPS)
    times = np.array([5, 10, 25, 35, 45, 55, 65])
    want = [math.inf, 0.6, 0.4, 0.4, 0.2, 0.0, 0.3]                    # not monotone: c5's luck raises it
    assert H.regret_curve(tr, t, times, budget=100) == pytest.approx(want)
    assert H.time_to_tol(tr, t, 0.02, 100) == 50                        # the first time, not the last
    assert H.time_to_tol(tr, t, 0.2, 100) == 40
    assert H.time_to_tol(tr, t, 0.02, 45) == math.inf                   # censored by the budget
    assert H.regret_curve(tr, t, np.array([65]), budget=55)[0] == 0.0   # completions after the budget are ignored
    # never-reached share and the median with censoring, through evaluate
    never = traj([(10, 0, 3.0)], repeat=1)
    again = dataclasses.replace(tr, repeat=2)
    rows = H.evaluate({("m", 1): [tr, never, again]}, t, 100, PR, draws=50)
    assert rows[0]["time_to_tol_s"]["median"] == 50 and rows[0]["never_fraction"]["value"] == pytest.approx(1 / 3)
    rows = H.evaluate({("m", 1): [tr, never]}, t, 100, PR, draws=50)
    assert rows[0]["time_to_tol_s"]["median"] == "inf" and rows[0]["never_fraction"]["value"] == 0.5


def test_bad_trajectories_are_named():
    t = H.table_truth(HAND)
    with pytest.raises(H.HarnessError, match="m repeat 0 .*not a primary-seed config"):
        H.arrays(Trajectory("m", 0, 1, ((1.0, "f" * 12, 3.0),), None), t, 10)
    with pytest.raises(H.HarnessError, match="not finite or not in time order"):
        H.arrays(traj([(5, 0, 3.0), (4, 1, 2.9)]), t, 10)


def test_a_method_returning_another_methods_trajectory_is_refused(monkeypatch):
    monkeypatch.setitem(H.METHODS, "liar", H.MethodSpec(lambda tab, r, w, b: traj([], method="x", repeat=r), "peer"))
    with pytest.raises(H.HarnessError, match="method 'liar' repeat 0 .*not its own Trajectory"):
        H.run_methods(HAND, ["liar"], {1: 1}, 100)
    with pytest.raises(H.HarnessError, match="'nope' is not registered"):
        H.run_methods(HAND, ["nope"], {1: 1}, 100)

    def missing(tab, r, w, b):
        raise ImportError("no module named 'sometool'")
    monkeypatch.setitem(H.METHODS, "peer_x", H.MethodSpec(missing, "peer"))
    run = H.run_methods(HAND, ["uniform_grid", "peer_x"], {1: 2, 4: 1}, 100)   # a peer without its tool: skipped
    assert set(run.trajs) == {("uniform_grid", 1), ("uniform_grid", 4)} and "sometool" in run.skipped["peer_x"]
    monkeypatch.setitem(H.METHODS, "ours_x", H.MethodSpec(missing, "ours"))
    with pytest.raises(ImportError):                                            # ours never are
        H.run_methods(HAND, ["ours_x"], {1: 1}, 100)


# ---------------------------------------------------------------- bootstrap
def test_bootstrap_is_deterministic_and_resamples_configs():
    t = H.table_truth(HAND)
    trajs = {("m", 1): [traj(HAND_COMPS, repeat=r) for r in range(3)] + [traj([(10, 0, 3.0)], repeat=3)]}
    a = H.evaluate(trajs, t, 100, PR, draws=200, seed=3)
    assert json.dumps(a) == json.dumps(H.evaluate(trajs, t, 100, PR, draws=200, seed=3))
    present, best = H.draw_worlds(t, 4000, seed=0)
    assert np.array_equal(best, np.where(present, t.true_bpb, np.inf).min(axis=1))
    # with replacement: a config is in a draw with probability 1 - (1 - 1/6)^6 = 0.665 (+- 4 sd at 4000 draws)
    assert abs(present[:, t.index[CFG[3].config_id]].mean() - (1 - (5 / 6) ** 6)) < 4 * math.sqrt(0.665 * 0.335 / 4000)
    assert not np.array_equal(present, H.draw_worlds(t, 4000, seed=1)[0])
    # a draw without the best config measures regret against the best config it holds
    assert {2.5, 2.62, 2.7} <= set(np.round(best, 6)) and best.min() == 2.5


# ---------------------------------------------------------------- better vs useless, the paired test
def test_a_truly_better_method_is_faster_and_a_useless_one_is_not(monkeypatch):
    """Oracle: trains the uniform configs best-first (it knows the table); useless: the grid with other seeds."""
    from experiments.harness.tables import tenth_table
    tab = tenth_table(1, per_stratum=16, extra_every=0, phi_shift=0.5)  # best is uniform
    truth = H.table_truth(tab)
    budget = H.budget_s(tab, truth)
    uni = RM._uniform(tab)

    def oracle(table, repeat, workers, b):
        noise = np.random.default_rng(repeat).normal(0, 0.03, len(uni))
        order = np.argsort([truth.true_bpb[truth.index[c.config_id]] + e for c, e in zip(uni, noise)])
        comps, first, end = RM.full_fidelity(table, [uni[i] for i in order], workers, b)
        return Trajectory("oracle", repeat, workers, tuple(comps), first, (), end)

    def useless(table, repeat, workers, b):
        return dataclasses.replace(RM.uniform_grid(table, repeat + 1000, workers, b), method="useless", repeat=repeat)

    monkeypatch.setitem(H.METHODS, "oracle", H.MethodSpec(oracle, "ours"))
    monkeypatch.setitem(H.METHODS, "useless", H.MethodSpec(useless, "ours"))
    run = H.run_methods(tab, ["uniform_grid", "oracle", "useless"], {1: 30}, budget)
    rows = {r["method"]: r for r in H.evaluate(run.trajs, truth, budget, PR, draws=300)}
    good, bad = rows["oracle"]["speedup"]["uniform_grid"], rows["useless"]["speedup"]["uniform_grid"]
    assert good["value"] > 3 and good["interval"][0] > 1 and good["sign_test"]["p"] < PR.alpha_per_arm
    assert good["faster"]
    assert not bad["faster"] and bad["sign_test"]["p"] > PR.alpha_per_arm and bad["interval"][0] < 1 < bad["interval"][1]


def v5_table(phi_top):
    """60 configs per stratum over the three families; rung order = top-rung order (no crossing)."""
    from accelerators.phi_grid import phi_grid
    plan = curves.plan(PS.space, lambda f: phi_grid(f, PS.space), families=("attn", "jepa", "hybrid"), per_stratum=30,
                       extra_every=0, primary_seed=7, extra_seeds=(), seed=0)
    stratum = {p.config.config_id: p.stratum for p in plan}
    u = {c: (int(c[:8], 16) % 1000) / 1000 for c in stratum}
    top = {c: (phi_top(u[c]) if s == "phi" else 2.5 + 0.5 * u[c]) for c, s in stratum.items()}
    ladder = curves.ladder_for(PS.rungs)
    return synthetic_table([(p.config, 7, "primary") for p in plan], preset="tenth", ladder=ladder, rungs=PS.rungs,
                           primary_seed=7, stratum=lambda c: stratum[c.config_id],
                           bpb=lambda c, s, step: top[c.config_id] + (100 / step) ** 0.5,
                           segment_s=lambda c, s, i: (ladder[i] - ((0,) + ladder)[i]) / 1000,
                           compile_s={curves.shape_key(p.config): 1.0 for p in plan})


@pytest.mark.parametrize("case", ["phi_better", "phi_worse"])
def test_v5_in_replay_is_faster_only_when_the_phi_grid_is_better(case):
    better = case == "phi_better"
    tab = v5_table((lambda u: 2.0 + 0.01 * u) if better else (lambda u: 3.2 + 0.3 * u))
    truth = H.table_truth(tab)
    budget = H.budget_s(tab, truth)
    run = H.run_methods(tab, ["asha", "asha+v5"], {1: 20}, budget)
    row = {r["method"]: r for r in H.evaluate(run.trajs, truth, budget, PR, draws=200)}["asha+v5"]
    sp = row["speedup"]["asha"]
    assert sp["faster"] is better and (sp["sign_test"]["p"] < PR.alpha_per_arm) is better
    # the live falsifier inside the replayed race: judged at 45 of 81 trials, then one stratum only
    o = run_replay(seed=3, preset="tenth", table=tab, sampler=RM._v5_sampler(tab, PR), version=RM.VERSION)
    v = dict(o.summary.verdicts)["phi_grid"]
    phi = {c for c, s in zip(truth.ids, truth.strata) if s == "phi"}
    late = [t.config.config_id in phi for t in o.state.trials[50:]]
    early = [t.config.config_id in phi for t in o.state.trials[:44]]
    assert v.enabled is better and all(x is better for x in late) and 15 <= sum(early) <= 29
    assert {t.config.config_id for t in o.state.trials} <= set(truth.ids)


# ---------------------------------------------------------------- H(1), H(2)
def _grid_and(method_first):
    grid = [traj([(50, 3, 2.5)], method="uniform_grid", repeat=r, first=100.0) for r in range(5)]
    ours = [traj([(60, 3, 2.5)], method="ours", repeat=r, first=f) for r, f in enumerate(method_first)]
    rows = H.evaluate({("uniform_grid", 1): grid, ("ours", 1): ours}, H.table_truth(HAND), 100, PR,
                      kinds={"uniform_grid": "baseline", "ours": "ours"}, draws=100)
    return {r["method"]: r for r in rows}["ours"]["h1"]


def test_falsify_h1_first_promotion_too_slow():
    slow = _grid_and([60.0, 55.0, 70.0, 40.0, 65.0])             # median 60 = 0.6 x the grid's 100
    assert slow["ratio_to_grid"] == pytest.approx(0.6) and slow["holds"] is False
    fast = _grid_and([30.0, 45.0, 20.0, 80.0, 35.0])             # median 35 = 0.35 x
    assert fast["ratio_to_grid"] == pytest.approx(0.35) and fast["holds"] is True
    never = _grid_and([None] * 5)                                 # never promoted: infinitely late
    assert never["ratio_to_grid"] == "inf" and never["holds"] is False


def test_falsify_h2_cheap_promotions_fail():
    tab = small_table({i: 2.5 + 0.1 * i for i in range(8)})      # top 10 % of 8 configs: ceil(0.8) = 1, CFG[0]
    t = H.table_truth(tab)

    def h2(cheap):
        ts = [traj([(10, 0, 2.5)], repeat=r, cheap=c) for r, c in enumerate(cheap)]
        return H.evaluate({("m", 1): ts}, t, 100, PR, draws=20)[0]["h2"]

    bad = h2([[0, 0, 0], [5, 0, 6]])                             # 2 of 6 outside the top set: 33 % > 30 %
    assert (bad["promoted"], bad["outside_top"], bad["falsified"]) == (6, 2, True)
    ok = h2([[0, 0, 0], [0, 0, 6]])                              # 1 of 6: 17 %
    assert (ok["outside_top"], ok["falsified"]) == (1, False)
    none = h2([[], []])
    assert none["promoted"] == 0 and none["falsified"] is None


def test_budget_keeps_the_grid_finishing_at_every_worker_count():
    from experiments.harness.tables import tenth_table
    tab = tenth_table(2, per_stratum=8, extra_every=0)
    truth = H.table_truth(tab)
    budget = H.budget_s(tab, truth)
    n = len(RM._uniform(tab))
    ends = {}
    for w in (1, 4, 16):
        g = RM.uniform_grid(tab, 0, w, budget)
        assert len(g.completions) == n and g.sim_end_s <= budget * (1 + 1e-9)
        ends[w] = g.sim_end_s
    assert ends[1] == pytest.approx(budget) and ends[16] < ends[4] < ends[1]
    # random search at full fidelity: the race at one rung over the same configs, same total work on 1 worker
    r = RM.random_full(tab, 0, 1, budget)
    assert sorted(c[1] for c in r.completions) == sorted(c[1] for c in g.completions)
    assert r.sim_end_s == pytest.approx(budget) and r.first_promotion_s is not None


# ---------------------------------------------------------------- the CLI
def test_cli_prints_the_table_and_writes_json_and_plots(tmp_path, monkeypatch, capsys):
    from experiments.hypothesis import main
    monkeypatch.setattr(RM, "other_accelerators", lambda pr: {"v1": "stub", "v2": "stub"})
    monkeypatch.setitem(sys.modules, "experiments.harness.peers", None)       # not installed: a note, not a crash
    rc = main(["--synthetic", "0", "--repeats", "3", "--repeats-multi", "2", "--workers", "1", "4", "--draws", "20",
               "--methods", "uniform_grid", "asha", "asha+v5", "--peers", "--out", str(tmp_path / "h.json"),
               "--plots", str(tmp_path)])
    out = capsys.readouterr()
    assert rc == 0 and "peer adapters not loaded" in out.err and "median time to regret <= 0.02" in out.out
    assert "H(1) asha+v5 @ 1 worker(s)" in out.out and "not applicable" in out.out
    doc = json.loads((tmp_path / "h.json").read_text())
    assert [(r["method"], r["workers"]) for r in doc["results"]] == [
        ("uniform_grid", 1), ("asha", 1), ("asha+v5", 1), ("uniform_grid", 4), ("asha", 4), ("asha+v5", 4)]
    assert doc["table"]["primary_configs"] == {"phi": 192, "uniform": 192} and doc["repeats"] == {"1": 3, "4": 2}
    assert all((tmp_path / f"hypothesis_regret_w{w}.png").stat().st_size > 10_000 for w in (1, 4))
    assert main(["--table", str(tmp_path / "none.jsonl")]) == 2 and "curve table not found" in capsys.readouterr().err


def test_parallel_jobs_give_the_same_trajectories():
    tab = v5_table(lambda u: 2.0 + 0.01 * u)
    budget = H.budget_s(tab, H.table_truth(tab))
    one = H.run_methods(tab, ["asha", "asha+v3"], {1: 3, 4: 2}, budget)
    two = H.run_methods(tab, ["asha", "asha+v3"], {1: 3, 4: 2}, budget, jobs=2)
    assert one.trajs == two.trajs and list(one.trajs) == list(two.trajs)


def test_parallel_jobs_skip_a_missing_peer_like_the_serial_run(monkeypatch):
    def broken(table, repeat, workers, budget):
        raise ImportError("no such tool")
    monkeypatch.setitem(H.METHODS, "ghost", H.MethodSpec(broken, "peer", "test"))
    tab = v5_table(lambda u: 2.0 + 0.01 * u)
    budget = H.budget_s(tab, H.table_truth(tab))
    for jobs in (1, 2):
        run = H.run_methods(tab, ["asha", "ghost"], {1: 12}, budget, jobs=jobs)
        assert "ghost" in run.skipped and ("ghost", 1) not in run.trajs and len(run.trajs[("asha", 1)]) == 12


def test_race_default_is_the_race_its_verdicts_give(monkeypatch):
    """With V3 and V6 judged off, race_default is asha+v5; a verdict that enables V6 adds UCB1 to it."""
    import experiments.harness.replay_default as RD
    from accelerators import bohb, ucb
    from igla_jax.evidence.verdict import Verdict
    tab = v5_table(lambda u: 2.0 + 0.01 * u)
    budget = 60.0
    for mod, name in ((bohb, "load_v3_verdict"), (ucb, "load_v6_verdict")):
        monkeypatch.setattr(mod, name, lambda pr, *a, **k: Verdict(False, 1.0, pr.alpha_per_arm, "test: off"))
    for repeat in (0, 1):
        assert RD.race_default(tab, repeat, 2, budget).completions == RM.asha_v5(tab, repeat, 2, budget).completions
    monkeypatch.setattr(ucb, "load_v6_verdict", lambda pr, *a, **k: Verdict(True, 0.0, pr.alpha_per_arm, "test: on"))
    assert RD.race_default(tab, 0, 2, budget).completions == RM.asha_v5_v6(tab, 0, 2, budget).completions
    assert RM.asha_v5_v6(tab, 0, 2, budget).completions != RM.asha_v5(tab, 0, 2, budget).completions
    monkeypatch.setattr(RM, "other_accelerators", lambda pr: {"v1": "enabled, but no replay adapter"})
    with pytest.raises(H.HarnessError, match="race_default: .*v1.*a replay cannot"):
        RD.race_default(tab, 0, 1, budget)


def test_v5_is_judged_on_the_same_race_capped_or_anytime():
    """prereg v10 (c): V5 decides at its first 45 first-rung results, before the 81-trial cap binds, so the anytime
    race reaches the same verdict through the same first starts (what keeps its committed study valid)."""
    tab = v5_table(lambda u: 2.0 + 0.01 * u)
    budget = H.budget_s(tab, H.table_truth(tab))
    for seed in (0, 1, 2):
        capped = run_replay(seed=seed, preset="tenth", table=tab, sampler=RM._v5_sampler(tab, PR), version=RM.VERSION)
        anytime = run_replay(seed=seed, preset="tenth", table=tab, sampler=RM._v5_sampler(tab, PR), version=RM.VERSION,
                             budget_s=budget)
        a, b = (dict(o.summary.verdicts)["phi_grid"] for o in (capped, anytime))
        assert (a.enabled, a.statistic) == (b.enabled, b.statistic)
        ids = [[t.config.config_id for t in o.state.trials] for o in (capped, anytime)]
        assert len(ids[1]) > len(ids[0]) == 81 and ids[1][:81] == ids[0]
