"""V3 BOHB: the density model (HpBandSter's rule), proposals, the falsifier on replays, the verdict file, the CLI."""
from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from accelerators.bohb import (BOHBSampler, Observation, V3Error, bohb_verdict, encode, fit_model, history_from_rows,
                               lever_values, load_v3_verdict, regret_at, write_v3_verdict)
from igla_jax import curves
from igla_jax.evidence.ledger_row import CodeVersion
from igla_jax.evidence.prereg import load_prereg
from igla_jax.evidence.verdict import Verdict
from igla_jax.execution.presets import PRESETS
from igla_jax.execution.race_runner import run_replay
from igla_jax.execution.replay import synthetic_table, table_space
from igla_jax.search.interfaces import RandomSampler
from igla_jax.search.race import Race, Start
from igla_jax.search.search_space import DEFAULT_SPACE, sample

PR = load_prereg()
PS = PRESETS["tenth"]
V = CodeVersion("0" * 40, False)
ON = Verdict(True, math.nan, PR.alpha_per_arm, "on for the test")


def obs(cfgs, bpbs, rung=0):
    return tuple(Observation(c, rung, b) for c, b in zip(cfgs, bpbs))


def test_a_rung_has_a_model_only_with_more_than_d_points_in_each_set():
    cfgs = sample(0, "attn", 40, DEFAULT_SPACE)
    vals = lever_values(DEFAULT_SPACE, "attn")
    # d = 7 levers: n_good = max(8, floor(0.15 n)) and n_bad = max(8, floor(0.85 n)); both need > 7 points
    assert fit_model(obs(cfgs[:15], range(15)), 0, vals, PR) is None   # 8 good, 7 bad
    m = fit_model(obs(cfgs[:16], range(16)), 0, vals, PR)
    assert m is not None and (m.n_good, m.n_bad) == (8, 8)
    m = fit_model(obs(cfgs, range(40)), 0, vals, PR)
    assert (m.n_good, m.n_bad) == (8, 32)
    assert np.all(np.asarray(m.good.bw) >= PR.bohb_min_bandwidth) and np.all(np.asarray(m.good.bw) <= 1.0)
    assert fit_model(obs(cfgs, range(40)), 1, vals, PR) is None          # nothing at rung 2


def test_the_density_ratio_prefers_configs_like_the_good_ones():
    cfgs = sample(1, "attn", 60, DEFAULT_SPACE)
    vals = lever_values(DEFAULT_SPACE, "attn")
    bpb = [2.5 + (0.0 if c.lr == 3e-3 else 0.5) + 0.01 * i for i, c in enumerate(cfgs)]
    m = fit_model(obs(cfgs, bpb), 0, vals, PR)
    mid = dataclasses.replace(cfgs[0], lr=3e-3)
    off = dataclasses.replace(cfgs[0], lr=1e-2)
    r = m.ratio(np.stack([encode(mid, vals), encode(off, vals)]))
    assert r[0] > 2 * r[1]
    one = m.ratio(np.stack([encode(mid, vals)]))      # a family with one unseen candidate left (the anytime race)
    assert one.shape == (1,) and one[0] == pytest.approx(r[0])


def test_live_proposals_on_the_full_grid_are_fresh_and_deterministic():
    s = BOHBSampler(PR, DEFAULT_SPACE, ON)
    race = Race(PS.race_config(PR, 0), sampler=s)
    state, _ = race.step(race.init(), Start())
    hist = obs(sample(2, "attn", 30, DEFAULT_SPACE), np.linspace(2.4, 3.4, 30))
    warm = dataclasses.replace(s, history=hist)
    st = warm.init(5)
    ps = [warm.propose(dataclasses.replace(st, draws=k), state, "attn", 3) for k in range(12)]
    assert all(len(p.configs) == 3 and all(c.family == "attn" and c.config_id not in state.seen_ids for c in p.configs)
               for p in ps)
    assert warm.propose(st, state, "attn", 3) == ps[0]
    assert any(p.state.last.startswith("model rung 1") for p in ps)       # the warm start gives a model at once
    assert BOHBSampler(PR, DEFAULT_SPACE, ON).propose(st, state, "attn", 1).state.last in ("random", "no model")


def test_history_from_ledger_rows_reads_search_results_only():
    c = sample(3, "jepa", 2, DEFAULT_SPACE)
    rows = [{"config": c[0].to_dict(), "status": "trained", "bpb": 2.7, "extra": {"action": "train", "rung": 1}},
            {"config": c[1].to_dict(), "status": "diverged", "bpb": None, "extra": {"action": "train", "rung": 0}},
            {"config": c[1].to_dict(), "status": "confirmed", "bpb": 2.6, "extra": {"action": "confirm"}},
            {"config": c[1].to_dict(), "status": "pruned", "bpb": 2.9, "extra": {"action": "prune", "rung": 0}}]
    h = history_from_rows(rows, PS.rungs)
    assert h == (Observation(c[0], 1, 2.7), Observation(c[1], 0, math.inf))


def test_regret_at_uses_the_incumbent_by_observed_bpb():
    true = {"a": 2.6, "b": 2.5, "c": 2.55}
    comps = [(10.0, "a", 2.61), (20.0, "b", 2.64), (30.0, "c", 2.50)]
    assert regret_at(comps, 5.0, true, 2.5, 5.0) == 5.0
    assert regret_at(comps, 25.0, true, 2.5, 5.0) == pytest.approx(0.1)     # b observed worse than a: a stays
    assert regret_at(comps, 30.0, true, 2.5, 5.0) == pytest.approx(0.05)


def test_falsify_bohb_regret_verdict_on_paired_regrets():
    rng = np.random.default_rng(0)
    asha = rng.uniform(0.05, 0.2, 100)
    assert bohb_verdict(asha - 0.03, asha, PR).enabled                      # lower in every pair
    assert not bohb_verdict(asha, asha, PR).enabled                          # all tied: p = 1
    assert not bohb_verdict(asha + rng.normal(0, 0.05, 100), asha, PR).enabled   # noise only
    assert not bohb_verdict(asha + 0.03, asha, PR).enabled                   # worse
    with pytest.raises(V3Error):
        bohb_verdict([0.1], [0.2], PR)
    with pytest.raises(V3Error):
        bohb_verdict([0.1, math.inf], [0.2, 0.1], PR)


def _table(structured: bool):
    fam_off = {"attn": 0.0, "hybrid": 0.05, "jepa": 0.1}
    cfgs = [c for f in ("attn", "jepa", "hybrid") for c in sample(4, f, 70, PS.space)]

    def top(c):
        if not structured:   # a table with no structure for a density model to learn: BPB from a hash
            return 2.4 + (int(c.config_id[:8], 16) % 1000) / 1000
        i = [list(vs).index(getattr(c, f)) for f, vs in zip(("width", "lr", "warmup"),
                                                              (PS.space.width, PS.space.lr, PS.space.warmup))]
        return 2.4 + fam_off[c.family] + 0.3 * abs(i[1] - 1) + 0.2 * (2 - i[0]) + 0.1 * abs(i[2] - 1)
    t = {c.config_id: top(c) for c in cfgs}
    ladder = curves.ladder_for(PS.rungs)
    return synthetic_table([(c, 7, "primary") for c in cfgs], preset="tenth", ladder=ladder, rungs=PS.rungs,
                           primary_seed=7, bpb=lambda c, s, step: t[c.config_id] + (100 / step) ** 0.5,
                           segment_s=lambda c, s, i: (ladder[i] - ((0,) + ladder)[i]) / 100,
                           compile_s={curves.shape_key(c): 1.0 for c in cfgs})


def test_falsify_bohb_regret_a_useless_bohb_is_disabled_on_replays():
    """On a table with nothing to learn, the study (the harness's replays) must disable V3."""
    from experiments.studies.v3_study import run_study
    s = run_study(_table(False), 20, PR)
    assert not s.verdict.enabled and len(s.bohb_regrets) == 20
    assert s.t_s == pytest.approx(PR.bohb_regret_at_budget * s.budget_s) and s.budget_s > max(s.asha_end_s) / 2


def test_bohb_study_regrets_are_no_worse_on_a_structured_table():
    from experiments.studies.v3_study import run_study
    s = run_study(_table(True), 12, PR)
    assert np.mean(s.bohb_regrets) <= np.mean(s.asha_regrets) + 1e-12


def test_verdict_file_round_trip_and_refusals(tmp_path):
    p = tmp_path / "v3.json"
    miss = load_v3_verdict(PR, p)
    assert not miss.enabled and "not judged yet" in miss.reason
    v = Verdict(True, 0.0001, PR.alpha_per_arm, "test win")
    write_v3_verdict(p, v, table="t.jsonl", table_sha256="ab" * 32, prereg=PR, bohb_regrets=[0.1], asha_regrets=[0.2])
    assert load_v3_verdict(PR, p) == v
    assert load_v3_verdict(PR, p, table_sha256="ab" * 32) == v
    with pytest.raises(V3Error, match="another table|not the table in use"):
        load_v3_verdict(PR, p, table_sha256="cd" * 32)
    p.write_text(json.dumps({"kind": "igla-v6-verdict", "verdict": {}}))
    with pytest.raises(V3Error, match="not a igla-v3-verdict file"):
        load_v3_verdict(PR, p)


def test_race_cli_bohb_flag_records_the_verdict(tmp_path):
    import json as _json
    from experiments.race import main
    from igla_jax.execution.replay import synthetic_rows
    table = _table(True)
    cfgs = [table.runs[k].config for k in table.order]
    ladder = curves.ladder_for(PS.rungs)
    rows, man = synthetic_rows([(c, 7, "primary") for c in cfgs], preset="tenth", ladder=ladder, rungs=PS.rungs,
                               primary_seed=7, bpb=lambda c, s, step: 2.5 + (100 / step) ** 0.5,
                               segment_s=lambda c, s, i: 1.0, compile_s={curves.shape_key(c): 1.0 for c in cfgs})
    path = tmp_path / "tab.jsonl"
    path.write_text("".join(_json.dumps(r) + "\n" for r in rows))
    curves.write_manifest(curves.manifest_path(path), path, man)
    rc = main(["--replay", str(path), "--preset", "tenth", "--seed", "1", "--out", str(tmp_path / "r"),
               "--ucb", "off", "--zero-cost", "off", "--mup", "off"])
    assert rc == 0
    spec = json.loads((tmp_path / "r" / "race.json").read_text())["spec"]
    assert spec["flags"]["bohb"] == "study" and "v3_verdict" in spec["verdict_sources"]


def test_falsify_bohb_regret_power_a_placebo_is_disabled_in_almost_every_study():
    """Power, not just possibility: over resampled studies a useless 'BOHB' (uniform sampling on another
    stream) is disabled at about 1 - alpha / 7; the real BOHB's enable rate is reported beside it."""
    from experiments.studies.v3_power import power, regrets
    reg = regrets(_table(True), 16, PR)
    res = power(reg, 12, 200, PR)
    assert res["placebo_disabled"] >= 0.98
    assert 0.0 <= res["bohb_enabled"] <= 1.0 and set(res["mean_regret"]) == {"asha", "bohb", "placebo"}


def test_ordered_pdf_is_statsmodels_pdf_bit_for_bit():
    """V3's many-point density is statsmodels' own, to the byte, at every lever count, size and bandwidth floor."""
    import warnings
    from statsmodels.nonparametric.kernel_density import KDEMultivariate
    from accelerators.bohb import ordered_pdf
    rng = np.random.default_rng(7)
    for trial in range(60):
        d, levels = int(rng.integers(1, 8)), int(rng.integers(2, 9))
        data = rng.integers(0, levels, (int(rng.integers(d + 1, 200)), d)).astype(float)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            kde = KDEMultivariate(data, var_type="o" * d, bw="normal_reference")
        kde.bw = np.clip(np.nan_to_num(kde.bw, nan=1.0), PR.bohb_min_bandwidth if trial % 2 else 0.3, 1.0)
        xs = rng.integers(0, levels, (int(rng.integers(1, 120)), d)).astype(float)
        want = np.atleast_1d(np.asarray(kde.pdf(xs), float))
        assert ordered_pdf(kde, xs).tobytes() == want.tobytes()
    with pytest.raises(V3Error, match="not all ordinal"):
        ordered_pdf(KDEMultivariate(rng.random((20, 2)), var_type="co", bw="normal_reference"), np.zeros((1, 2)))
