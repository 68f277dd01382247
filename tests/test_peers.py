"""The field's tools on our table and clock (experiments.harness.peers): valid, budgeted, deterministic, honest costs.

The tool tests skip when the `compare` extra is missing (pip install -e '.[compare]').
"""
from __future__ import annotations

import dataclasses
import math

import pytest

from experiments.harness import peers
from experiments.harness.peers import PEERS, DIVERGED_BPB, PeerClock, PeerError, TableMap, peer_space
from igla_jax import curves
from igla_jax.execution.presets import PRESETS
from igla_jax.execution.replay import ReplayBackend, synthetic_table
from igla_jax.search.search_space import Config, sample

PACKAGE = {"optuna_tpe_hyperband": "optuna", "hpbandster_bohb": "hpbandster", "smac_hyperband": "smac",
           "smac_multifidelity": "smac", "synetune_asha": "syne_tune", "synetune_bohb": "syne_tune",
           "synetune_asha_cqr": "syne_tune", "synetune_asha_bore": "syne_tune", "dehb": "dehb"}
RESTARTS = {"hpbandster_bohb", "smac_hyperband", "smac_multifidelity", "dehb"}   # plain Hyperband: each budget from scratch


def quality(c: Config) -> float:
    return (abs(math.log(c.lr / 3e-3)) + (96 - c.width) / 128 + abs(c.depth - 2) / 4 + c.dropout + c.warmup
            + c.wd / 7 + (0.0 if c.family == "hybrid" else 0.05))


def tiny_table(n_per_family: int = 9, *, dies: Config | None = None):
    """27 uniform configs (rank-preserving curves: the best is best at every rung) and one far better phi config."""
    ps = PRESETS["tenth"]
    ladder = curves.ladder_for(ps.rungs)
    uni = [c for f in ("attn", "jepa", "hybrid") for c in sample(0, f, n_per_family, ps.space)]
    phi = next(c for c in sample(1, "attn", 40, ps.space) if c not in uni)

    def bpb(c: Config, seed: int, step: int) -> float | None:
        if c == dies and step > 300:
            return None
        return (1.0 if c == phi else 2.0 + quality(c)) + 2.0 * (100 / step) ** 0.5

    return synthetic_table([(c, 7, "primary") for c in uni + [phi]], bpb=bpb, preset="tenth", ladder=ladder,
                           rungs=ps.rungs, primary_seed=7, eval_s=0.25,
                           segment_s=lambda c, s, i: c.width * c.depth * (ladder[i] - ([0, *ladder][i])) / 1e4,
                           compile_s={curves.shape_key(c): 5.0 for c in uni + [phi]},
                           stratum=lambda c: "phi" if c == phi else "uniform")


TABLE = tiny_table()
SPACE = peer_space(TABLE)
BEST = min(SPACE.configs, key=quality)


def tool(name: str) -> None:
    pytest.importorskip(PACKAGE[name], reason=f"{name} needs the compare extra: pip install -e '.[compare]'")


def assert_valid(tr, name: str, repeat: int, workers: int, budget: float) -> None:
    assert (tr.method, tr.repeat, tr.workers, tr.cheap_promotions) == (name, repeat, workers, ())
    times = [t for t, _, _ in tr.completions]
    assert times == sorted(times) and all(0 < t <= budget for t in times) and 0 < tr.sim_end_s <= budget
    uniform = {c.config_id: c for c in SPACE.configs}
    for _, cid, bpb in tr.completions:  # only the uniform stratum, answered with its recorded top-rung BPB
        assert cid in uniform and bpb == TABLE.run(uniform[cid], 7).val_bpb[-1]
    assert tr.first_promotion_s is None or 0 < tr.first_promotion_s <= budget


# ---------------------------------------------------------------- shared pieces (no tool needed)
def test_space_is_the_uniform_stratum_encoded_as_family_and_lever_indices():
    assert len(SPACE.configs) == 27 and {c.family for c in SPACE.configs} == {"attn", "jepa", "hybrid"}
    assert all(TABLE.run(c, 7).stratum == "uniform" for c in SPACE.configs)
    assert (SPACE.rungs, SPACE.eta, SPACE.n_levels) == ((100, 300, 900, 2700), 3, (3,) * 7)
    assert SPACE.lever_values("jepa")[3] == (0.99, 0.996, 0.999) and SPACE.lever_values("attn")[3] == (0.8, 0.9, 0.95)
    one = dict(bpb=lambda c, s, t: 3.0, segment_s=lambda c, s, i: 1.0, ladder=(100, 200, 400), rungs=(100, 200, 400),
               primary_seed=7, compile_s={})
    assert peer_space(synthetic_table([(BEST, 7, "primary")], **one)).eta == 2
    with pytest.raises(PeerError, match=r"rungs \[100, 250, 400\] are not r0 \* eta\^k"):
        peer_space(dataclasses.replace(synthetic_table([(BEST, 7, "primary")], **one), rungs=(100, 250, 400)))
    with pytest.raises(PeerError, match="no primary-seed configs of the uniform stratum"):
        peer_space(synthetic_table([(BEST, 7, "primary")], stratum=lambda c: "phi", **one))


def test_mapping_is_nearest_unassigned_in_the_family_and_keeps_a_tool_config():
    m = TableMap(SPACE)
    idx = SPACE.index_of(BEST)
    assert m.assign("a", BEST.family, idx) == BEST                 # a recorded config maps to itself
    second = m.assign("b", BEST.family, idx)                       # the same point again: the next nearest
    fam = [c for c in SPACE.configs if c.family == BEST.family and c != BEST]
    d = [sum(abs(x - y) for x, y in zip(SPACE.index_of(c), idx)) for c in fam]
    assert second == fam[d.index(min(d))] and m.assign("a", "jepa", (0,) * 7) == BEST   # a key keeps its config
    for k in range(25):
        m.assign(k, BEST.family, idx)                              # other families once this one runs out
    assert len({m.assign(k, "attn", idx) for k in range(25)} | {BEST, second}) == 27
    assert m.assign("again", BEST.family, idx) == BEST             # all assigned: nearest, charged afresh


def test_clock_charges_continuations_per_segment_and_restarts_from_zero():
    run = TABLE.run(BEST, 7)
    clock = PeerClock(TABLE, 1)
    clock.submit("scratch", BEST, 0, 300)
    clock.submit("continue", BEST, 300, 900)
    clock.submit("restart", BEST, 0, 900)
    a, b, c = clock.poll(), clock.poll(), clock.poll()
    seg = run.seg_cum
    assert a.t == pytest.approx(5.0 + seg[2] + 0.25)                                 # compile once, then training
    assert b.t - a.t == pytest.approx(seg[4] - seg[2] + 0.25)
    assert c.t - b.t == pytest.approx(seg[4] + 0.25) and (a.bpb, c.step) == (run.val_bpb[2], 900)
    dead = tiny_table(dies=BEST)
    clock = PeerClock(dead, 1)
    clock.submit("x", BEST, 300, 900)                              # dies in (300, 600]: charged to 600, told 8.0
    x = clock.poll()
    clock.submit("y", BEST, 900, 2700)                             # continuing a dead run: answered at once
    y = clock.poll()
    assert (x.bpb, x.told, y.bpb, y.t, clock.poll()) == (None, DIVERGED_BPB, None, x.t, None)
    assert x.t == pytest.approx(5.0 + dead.run(BEST, 7).seg_cum[3] - dead.run(BEST, 7).seg_cum[2])


def test_a_missing_tool_fails_its_method_only_with_the_install_line(monkeypatch):
    assert set(PEERS) == set(PACKAGE)
    monkeypatch.setitem(peers._TOOLS, "nothing", ("experiments.harness.peers_optuna", "run_optuna", "igla_no_such_pkg", {}))
    with pytest.raises(peers.PeerUnavailable,
                       match=r"'nothing' needs the package 'igla_no_such_pkg' .*pip install -e '\.\[compare\]'"):
        peers._method("nothing")(TABLE, 0, 1, 100.0)
    monkeypatch.setitem(peers._TOOLS, "here", ("experiments.harness.peers_optuna", "run_optuna", "math", {}))
    with pytest.raises(PeerError, match="workers=0: must be >= 1"):
        peers._method("here")(TABLE, 0, 0, 100.0)
    with pytest.raises(PeerError, match="budget_s=nan: must be a positive number"):
        peers._method("here")(TABLE, 0, 1, math.nan)
    with pytest.raises(PeerError, match="repeat=-1: must be an integer >= 0"):
        peers._method("here")(TABLE, -1, 1, 100.0)


# ---------------------------------------------------------------- each tool
@pytest.mark.parametrize("name", sorted(PEERS))
def test_peer_finds_the_best_uniform_config_within_the_budget_and_never_a_phi_one(name):
    tool(name)
    tr = PEERS[name](TABLE, 0, 1, 400.0)
    assert_valid(tr, name, 0, 1, 400.0)
    assert min(tr.completions, key=lambda c: c[2])[1] == BEST.config_id
    assert tr.first_promotion_s is not None and tr.first_promotion_s < tr.completions[0][0]
    dead = PEERS[name](tiny_table(dies=BEST), 0, 1, 400.0)        # the best diverges after step 300: told 8.0
    assert_valid(dead, name, 0, 1, 400.0)
    assert dead.completions and BEST.config_id not in {c for _, c, _ in dead.completions}


@pytest.mark.parametrize("name", sorted(PEERS))
def test_peer_is_deterministic_in_repeat_on_several_workers(name):
    tool(name)
    runs = [PEERS[name](TABLE, r, 3, 80.0) for r in (0, 0, 1)]
    for r, tr in zip((0, 0, 1), runs):
        assert_valid(tr, name, r, 3, 80.0)
    assert runs[0] == runs[1] and runs[0] != runs[2]


@pytest.mark.parametrize("name", sorted(n for n in PEERS if not n.startswith("synetune")))  # its own backend: below
def test_restarting_tools_pay_from_step_zero_and_continuing_tools_per_segment(name, monkeypatch):
    """No free restarts: HpBandSter and SMAC evaluate each budget from scratch; Optuna continues its trials."""
    tool(name)
    asked: list[tuple[int, int]] = []
    submit = PeerClock.submit
    monkeypatch.setattr(PeerClock, "submit", lambda self, tok, cfg, frm, to: asked.append((frm, to)) or
                        submit(self, tok, cfg, frm, to))
    PEERS[name](TABLE, 0, 1, 400.0)
    assert any(to > 100 for _, to in asked)
    if name in RESTARTS:
        assert all(frm == 0 for frm, _ in asked)
    else:
        assert all(frm == (0 if to == 100 else SPACE.rungs[SPACE.rungs.index(to) - 1]) for frm, to in asked)


def test_synetune_backend_charges_like_replay():
    """A Syne Tune trial run to the top costs what ReplayBackend charges for the same rung-by-rung trial."""
    pytest.importorskip("syne_tune", reason="needs the compare extra: pip install -e '.[compare]'")
    from experiments.harness.peers_synetune import TableBackend
    from igla_jax.search.race_types import Train
    for table in (TABLE, tiny_table(dies=BEST)):
        be = TableBackend(table, SPACE, workers=1)
        be._trial_dict[0] = type("T", (), {"config": {"family": BEST.family,
                                                      **dict(zip(peers.LEVER_FIELDS, SPACE.index_of(BEST)))}})()
        _, results = be._run_job_and_collect_results(0)
        rb, t, steps = ReplayBackend(table), 0.0, []
        for i, (frm, to) in enumerate(zip((0,) + SPACE.rungs, SPACE.rungs)):
            rb.submit(Train(i, "t", BEST, 7, i, frm, to, 2700, None, None, None, None), rb.now)
            f = rb.poll()
            steps.append((to, f.result.val_bpb if f.result.status == "ok" else DIVERGED_BPB, f.finish_s))
            if f.result.status != "ok":
                break
        got = [(r["step"], r["bpb"], r["elapsed_time"]) for r in results]
        assert [s[:2] for s in got] == [s[:2] for s in steps]
        assert [s[2] for s in got] == pytest.approx([s[2] for s in steps])


def test_the_harness_registers_the_peers_and_accepts_their_trajectories(monkeypatch):
    pytest.importorskip("optuna", reason="needs the compare extra: pip install -e '.[compare]'")
    from experiments.harness import methods as H   # the module whose METHODS register_method and run_methods read
    monkeypatch.setattr(H, "METHODS", dict(H.METHODS))
    assert H.load_peers() is None and {n: H.METHODS[n].kind for n in PEERS} == {n: "peer" for n in PEERS}
    run = H.run_methods(TABLE, ["optuna_tpe_hyperband"], {1: 2, 3: 1}, 300.0)
    assert not run.skipped and [len(run.trajs[("optuna_tpe_hyperband", w)]) for w in (1, 3)] == [2, 1]


# ---------------------------------------------------------------- speed-ups that must not change a decision
def test_exact_truncnorm_is_scipys_truncnorm_rvs_bit_for_bit():
    """The fast path equals scipy on probes; the check itself rejects a draw off by one ulp or from another stream."""
    pytest.importorskip("scipy")
    import numpy as np
    from experiments.harness import exact_truncnorm as E
    assert E.exact(1000)
    assert not E.exact(200, fn=lambda *a, **k: np.nextafter(E.rvs(*a, **k), np.inf))        # one ulp off
    assert not E.exact(200, fn=lambda *a, **k: (np.random.rand(), E.rvs(*a, **k))[1])       # a different draw
    assert not E.exact(200, fn=lambda *a, **k: float(E.rvs(*a, **k)))                        # float, not float64
    import scipy.stats as sps
    calls = [((-1.0, 2.0), {}), ((0.0, 1.0), {"size": 3}), ((-1.0, 2.0), {"loc": 1}), ((1.0, 0.5), {"loc": 0.0,
                                                                                                  "scale": 1.0})]
    outs = []
    for f in (sps.truncnorm.rvs, E.rvs):   # what the fast path does not take goes to scipy, errors included
        np.random.seed(3)
        outs.append([f(*a, **k) for a, k in calls[:3]])
        with pytest.raises(ValueError, match="Domain error"):
            f(*calls[3][0], **calls[3][1])
    assert all(np.array_equal(g, w) for g, w in zip(*outs))


@pytest.mark.parametrize("workers,repeat,budget", [(1, 0, 400.0), (1, 1, 400.0), (4, 0, 150.0)])
def test_hpbandster_with_exact_truncnorm_replays_the_same_trajectory(workers, repeat, budget):
    """The fast truncnorm.rvs is used (its cache is hit) and HpBandSter decides exactly as with scipy's own."""
    tool("hpbandster_bohb")
    from experiments.harness import exact_truncnorm as E
    from experiments.harness.peers_hpbandster import cg_bohb, run_hpbandster
    hits = E._terms_of.cache_info().hits
    fast = run_hpbandster(TABLE, repeat, workers, budget)
    assert E._terms_of.cache_info().hits > hits + 100 and cg_bohb.sps is E.sps   # used, then restored
    assert fast == run_hpbandster(TABLE, repeat, workers, budget, stock=True)


# CQR and BORE: one repeat each (their stock runs took 100-200 s a repeat; one repeat checks the same code path)
@pytest.mark.parametrize("searcher, workers, repeats", [("asha", 1, 2), ("asha", 4, 2), ("bohb", 1, 2), ("bohb", 4, 2),
                                                        ("cqr", 4, 1), ("bore", 4, 1)])
def test_synetune_sim_tuner_replays_the_stock_tuners_trajectory(searcher, workers, repeats):
    """No real sleep and a counting status change nothing Syne Tune decides."""
    tool("synetune_asha")
    from experiments.harness.peers_synetune import run_synetune
    for repeat in range(repeats):
        fast = run_synetune(TABLE, repeat, workers, 300.0, searcher=searcher, method=f"synetune_{searcher}")
        assert fast.completions
        assert fast == run_synetune(TABLE, repeat, workers, 300.0, searcher=searcher, method=f"synetune_{searcher}",
                                    stock=True)


def test_synetune_counting_status_counts_like_syne_tunes():
    tool("synetune_asha")
    from syne_tune.backend.trial_status import Status
    from syne_tune.tuning_status import TuningStatus
    from experiments.harness.peers_synetune import _CountingStatus
    trial = type("T", (), {"config": {}})()
    stock, ours = TuningStatus(["bpb"]), _CountingStatus(["bpb"])
    steps = [{0: Status.in_progress, 1: Status.in_progress}, {0: Status.completed, 2: Status.in_progress},
             {1: Status.stopped, 2: Status.paused, 3: Status.in_progress}, {2: Status.in_progress}]
    for step in steps:
        for st in (stock, ours):
            st.update({k: (trial, v) for k, v in step.items()}, [])
        for q in (Status.in_progress, Status.completed, Status.failed, [Status.stopped, Status.paused]):
            assert ours._num_trials(q) == stock._num_trials(q)
    for st in (stock, ours):
        st.mark_running_job_as_stopped()
    assert (ours.num_trials_running, ours.num_trials_finished) == (stock.num_trials_running, stock.num_trials_finished)
    assert (ours.num_trials_running, ours.num_trials_finished) == (0, 4)


def test_smac_ends_its_search_when_its_space_is_exhausted(monkeypatch):
    """SMAC raising ConfigurationSpaceExhaustedException (16 workers can use up the 6,561 encoded points) ends its
    search: nothing more is asked, what is in flight finishes and counts, the run returns a valid trajectory."""
    tool("smac_hyperband")
    from smac import HyperbandFacade
    from smac.main.exceptions import ConfigurationSpaceExhaustedException
    ask, asked = HyperbandFacade.ask, []

    def ask_until(self):
        if len(asked) >= 40:
            asked.append("refused")
            raise ConfigurationSpaceExhaustedException()
        asked.append("ok")
        return ask(self)

    monkeypatch.setattr(HyperbandFacade, "ask", ask_until)
    tr = PEERS["smac_hyperband"](TABLE, 0, 4, 400.0)
    assert asked.count("ok") == 40 and asked.count("refused") == 1        # never asked again after the refusal
    assert_valid(tr, "smac_hyperband", 0, 4, 400.0)
    assert tr.sim_end_s < 400.0                                             # it ended before the budget
