"""V4: the surrogate pruner on synthetic curve tables with known answers, its falsifiers, verdict file and CLI flag."""
from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys

import numpy as np
import pytest

from accelerators import surrogate as v4
from accelerators.surrogate import (SurrogatePruner, crossfit_pruner, fit_split, live_pruner, load_v4_verdict,
                                    rank_rule, surrogate_verdict, write_v4_verdict)
from accelerators.surrogate_model import (V4Error, config_folds, fit_power_law, holdout_errors, power_law,
                                          power_law_predict, table_examples)
from igla_jax import curves
from igla_jax.evidence.ledger_row import CodeVersion
from igla_jax.evidence.prereg import load_prereg, repo_root
from igla_jax.evidence.verdict import Verdict
from igla_jax.execution.presets import PRESETS
from igla_jax.execution.race_runner import run_replay
from igla_jax.execution.replay import synthetic_rows, synthetic_table
from igla_jax.search.race import Race, RaceConfig
from igla_jax.search.race_types import RungResult, Trial
from igla_jax.search.search_space import LEVER_FIELDS, sample

pytest.importorskip("xgboost")

PR = load_prereg()
PS = PRESETS["tenth"]
V = CodeVersion("0" * 40, False)
ON = Verdict(True, math.nan, PR.surrogate_top_pruned_max, "test: enabled")
OFF = Verdict(False, math.nan, PR.surrogate_top_pruned_max, "test: disabled")
FAST = {"n_estimators": 60, "learning_rate": 0.15}     # small boosters: the suite runs on 2 cores
LADDER = curves.ladder_for(PS.rungs)
CFGS = [c for f in ("attn", "jepa", "hybrid") for c in sample(2, f, 30, PS.space)]


def _levers(c) -> list[int]:
    return [list(vs).index(getattr(c, f)) for f, vs in zip(LEVER_FIELDS, PS.space.values(c.family))]


TOP = {c.config_id: 2.4 + 0.25 * abs(_levers(c)[2] - 1) + 0.15 * (2 - _levers(c)[0]) + 0.05 * _levers(c)[6]
       for c in CFGS}                                              # the known answer: top-rung BPB
AMP = {c.config_id: 1.0 + 0.4 * _levers(c)[2] for c in CFGS}        # how far above it the early curve starts
DRIFT = dict(zip(TOP, np.random.default_rng(5).uniform(2.3, 3.3, len(TOP))))


def _curve(c, seed, step, drift=False):
    noise = 0.01 * ((int(c.config_id[:4], 16) + seed) % 3 - 1)
    if drift and step == PS.rungs[-1]:
        return float(DRIFT[c.config_id])                          # the top rung has nothing to do with the curve
    # a cosine lr schedule's shape: the curve keeps falling fast to the end, which a power law fitted early misses
    late = 0.5 * (1 + math.cos(math.pi * step / PS.rungs[-1]))
    return TOP[c.config_id] + AMP[c.config_id] * late + 0.2 * ((100 / step) ** 0.5 - (100 / PS.rungs[-1]) ** 0.5) + noise


def table_kw(drift=False):
    return dict(bpb=lambda c, s, step: _curve(c, s, step, drift), preset="tenth", ladder=LADDER, rungs=PS.rungs,
                primary_seed=7, segment_s=lambda c, s, i: (LADDER[i] - ((0,) + LADDER)[i]) / 1000,
                compile_s={curves.shape_key(c): 1.0 for c in CFGS})


RUNS = [(c, 7, "primary") for c in CFGS] + [(c, 8, "extra") for c in CFGS[::6]]
TABLE = synthetic_table(RUNS, **table_kw())


@pytest.fixture(scope="module")
def crossfit():
    return crossfit_pruner(TABLE, PR, ON, params=FAST)


def replay(seed=1, **roles):
    return run_replay(seed=seed, preset="tenth", table=TABLE, version=V, **roles)


def decisions(rows):
    return [(r["event_id"], r["status"], r["config_id"], r.get("bpb"), r.get("decided_by"), r.get("score"),
             r["note"], (r.get("extra") or {}).get("interval")) for r in rows]


# ---------------------------------------------------------------- split, baseline, model
def test_config_split_holds_out_whole_configs(crossfit):
    _, m0, folds = crossfit
    ids = [c for c, _ in TABLE.order]
    assert folds == config_folds(ids, PR.holdout_fraction, 0) != config_folds(ids, PR.holdout_fraction, 1)
    held = {c for c, f in folds.items() if f == 0}
    assert abs(len(held) - PR.holdout_fraction * len(CFGS)) <= 1
    assert not held & m0.configs and held | m0.configs == set(ids)   # no config on both sides
    held_rows = [(c, s) for c, s in TABLE.order if c not in m0.configs]
    assert {c for c, _ in held_rows} == held
    assert len(held_rows) > len(held), "a held-out config with an extra seed is held out with both seeds"
    assert {(e.config.config_id, e.run.seed) for e in table_examples(TABLE)
            if folds[e.config.config_id] == 0} == set(held_rows)


def test_power_law_baseline_fits_an_exact_power_law():
    s = np.array([100, 200, 300, 600, 900], float)
    a, b, c = fit_power_law(s, power_law(s, 2.5, 1.5, 0.7))
    assert (a, b, c) == pytest.approx((2.5, 1.5, 0.7), abs=1e-4)
    law = dict(bpb=lambda cfg, seed, step: float(power_law(step, 2.5, 1.5, 0.7)))
    tab = synthetic_table([(CFGS[0], 7, "primary")], **{**table_kw(), **law})
    run = tab.run(CFGS[0], 7)
    for rung in (300, 900):
        assert power_law_predict(run, rung, 2700) == pytest.approx(float(power_law(2700, 2.5, 1.5, 0.7)), abs=1e-4)
    assert math.isfinite(power_law_predict(run, 100, 2700))          # one point: the training-bits fallback
    assert fit_power_law([100, 200], [3.0, 2.9]) is None


def test_surrogate_beats_the_power_law_on_a_known_answer(crossfit):
    _, m0, folds = crossfit
    err = holdout_errors(m0, [e for e in table_examples(TABLE) if folds[e.config.config_id] == 0])
    assert [e.rung for e in err] == [0, 1, 2]
    for e in err[1:]:
        assert e.surrogate_mae < 0.05 < e.power_law_mae, e         # the lr-dependent drop is learnt, not extrapolated


def test_fit_and_predictions_are_deterministic(crossfit):
    m1, _ = fit_split(TABLE, PR, 0, params=FAST)
    m2, _ = fit_split(TABLE, PR, 0, params=FAST)
    ex = table_examples(TABLE)[:10]
    for k in (1, 2):
        assert [m1.predict(e.config, e.results[:k + 1]) for e in ex] == [m2.predict(e.config, e.results[:k + 1])
                                                                         for e in ex]


# ---------------------------------------------------------------- the pruning rule
def test_rank_rule_vetoes_the_worst_share_once_enough_predictions_exist():
    f, m = PR.surrogate_prune_fraction, PR.surrogate_min_predictions
    assert rank_rule([], 9.0, f, m)[0] is False and rank_rule([1.0], 9.0, f, m)[0] is False   # below min
    assert rank_rule([1.0, 2.0], 3.0, f, m) == (True, 3, 3, 1)       # floor(0.6 * 3) = 1 worst
    assert rank_rule([1.0, 3.0], 2.0, f, m)[0] is False
    assert rank_rule([1.0, 2.0, 3.0, 4.0], 2.5, f, m) == (True, 3, 5, 3)   # floor(0.6 * 5) = 3 worst
    assert rank_rule([1.0, 2.0, 3.0, 4.0], 1.5, f, m)[0] is False
    assert rank_rule([2.0, 2.0], 2.0, f, m)[0] is False               # ties favour the trial


@dataclasses.dataclass(frozen=True)
class StubModel:
    """A model with fixed predictions per config (the rule is tested apart from XGBoost)."""
    values: dict
    rungs: tuple = PS.rungs

    def predict(self, cfg, results):
        v = self.values[cfg.config_id]
        return v, v - 0.1, v + 0.1


def _race_with(bpbs):
    rc = RaceConfig(rungs=PS.rungs, eta=3, seed=0, max_trials=81, victory_seeds=PR.seeds, reproduce_tol=1e-4)
    trials = tuple(Trial(f"t{i:04d}", CFGS[i], 7, "waiting", (RungResult(0, 100, b + 1, 1.0, (4.0,) * 4),
                                                              RungResult(1, 300, b, 1.0, (3.5,) * 8)))
                   for i, b in enumerate(bpbs))
    return dataclasses.replace(Race(rc).init(), trials=trials)


def test_pruner_respects_min_predictions_the_rank_rule_and_never_prunes_the_best():
    race = _race_with([2.0, 2.1, 2.2, 2.3, 2.4])                 # t0000 is best at rung 2
    preds = dict(zip((c.config_id for c in CFGS[:5]), (3.0, 2.5, 2.6, 2.7, 2.9)))
    p = SurrogatePruner.from_prereg(PR, ON, (StubModel(preds),))
    st, out = p.init(0), {}
    for i in (3, 4, 0, 1, 2):                                   # worst predictions first
        d = p.judge(st, race, race.trials[i])
        st, out[i] = d.state, d.judgement
        assert d.verdict == ON and d.judgement.score == preds[CFGS[i].config_id]
        assert d.judgement.interval == (d.judgement.score - 0.1, d.judgement.score + 0.1)
    assert not out[3].prune and not out[4].prune and "fewer than 3" in out[4].reason   # min predictions
    assert not out[0].prune and "best at its rung: never pruned" in out[0].reason       # worst of 3, but best BPB
    assert out[1].prune is False and out[2].prune is False      # rank 1 of 4 (2 worst), rank 2 of 5 (3 worst)
    assert [x.pruned for x in st.predictions] == [False] * 5 and len(st.at(1)) == 5
    d = p.judge(st, race, dataclasses.replace(race.trials[4], trial_id="t0099"))   # rank 4 of 6 (3 worst): vetoed
    assert d.judgement.prune and "ranks 4 of 6" in d.judgement.reason and "vetoed" in d.judgement.reason
    first = dataclasses.replace(race.trials[1], results=race.trials[1].results[:1])
    assert p.judge(st, race, first).judgement.prune is False    # rung 1: not consulted
    off = SurrogatePruner.from_prereg(PR, OFF)
    d = off.judge(off.init(0), race, race.trials[4])
    assert not d.judgement.prune and math.isnan(d.judgement.score) and d.state == off.init(0) and d.verdict == OFF


# ---------------------------------------------------------------- in a replayed race
def test_replay_prune_rows_carry_prediction_interval_and_verdict(crossfit):
    pruner = crossfit[0]
    o = replay(pruner=pruner)
    rows = [r for r in o.rows if r["status"] == "pruned" and r.get("decided_by") == "surrogate"]
    assert rows, "the surrogate vetoed nothing on this table"
    made = {p.trial_id: p for p in o.state.pruner_state.predictions}
    for r in rows:
        lo, hi = r["extra"]["interval"]
        assert lo <= r["score"] <= hi and "ranks" in r["note"] and "vetoed" in r["note"]
        assert made[r["extra"]["trial_id"]].pruned and made[r["extra"]["trial_id"]].value == pytest.approx(r["score"])
    assert ("surrogate", ON) in o.state.verdicts
    assert all(p.rung >= 1 for p in made.values())
    # identical decisions on a second replay with a pruner fitted again from the same seed
    again = crossfit_pruner(TABLE, PR, ON, params=FAST)[0]
    assert decisions(replay(pruner=again).rows) == decisions(o.rows)


def test_disabled_pruner_changes_no_decision_and_records_its_verdict():
    plain, off = replay(), replay(pruner=SurrogatePruner.from_prereg(PR, OFF))
    assert decisions(off.rows) == decisions(plain.rows)
    assert ("surrogate", OFF) in off.state.verdicts and off.state.pruner_state.predictions == ()


# ---------------------------------------------------------------- falsifiers
def test_falsify_surrogate_drift():
    """Curves whose top rung drifts away from what the early curve says: held-out MAE > 0.10, V4 disabled."""
    drift = synthetic_table(RUNS, **table_kw(drift=True))
    for tab, enabled in ((drift, False), (TABLE, True)):
        m0, folds = fit_split(tab, PR, 0, params=FAST)
        err = holdout_errors(m0, [e for e in table_examples(tab) if folds[e.config.config_id] == 0])
        v = surrogate_verdict({e.rung: e.surrogate_mae for e in err}, 0, 0, PR)
        assert v.enabled is enabled, v
        if not enabled:
            assert v.statistic > PR.surrogate_mae_max and "surrogate_mae_max" in v.reason
    assert surrogate_verdict({0: 0.5, 1: 0.05, 2: 0.05}, 10, 0, PR).enabled   # rung 1 is not a pruning rung
    assert not surrogate_verdict({1: 0.05, 2: math.nan}, 10, 0, PR).enabled


def test_falsify_pruning_winners_disables_v4():
    """A pruner that predicts the best configs worst prunes winners: top-pruned share > 0.10, V4 disabled."""
    from experiments.studies.v4_study import run_replays, top_pruned
    inverse = SurrogatePruner.from_prereg(PR, ON, (StubModel({c: 10.0 - b for c, b in TOP.items()}),))
    rep = run_replays(TABLE, inverse, 3, PR)
    ids = [c for per in rep.pruned for c in per]
    n_top = top_pruned(TABLE, ids, PR)
    assert ids and n_top / len(ids) > PR.surrogate_top_pruned_max
    v = surrogate_verdict({1: 0.01, 2: 0.01}, len(ids), n_top, PR)
    assert not v.enabled and "prunes winners" in v.reason
    assert surrogate_verdict({1: 0.01, 2: 0.01}, 100, 10, PR).enabled           # 0.10 is allowed
    assert not surrogate_verdict({1: 0.01, 2: 0.01}, 100, 11, PR).enabled


# ---------------------------------------------------------------- verdict file, live wiring, CLI
def _write(path, verdict, sha, preset="tenth", table="t.jsonl"):
    return write_v4_verdict(path, verdict, table=table, table_sha256=sha, preset=preset, prereg=PR, split_seed=0,
                            errors=(), pruned=3, pruned_top=0, repeats=2)


def test_verdict_file_round_trip_and_refusal_on_another_table(tmp_path):
    p = _write(tmp_path / "v4.json", ON, "a" * 64)
    assert load_v4_verdict(PR, p) == ON and load_v4_verdict(PR, p, table_sha256="a" * 64) == ON
    assert json.loads(p.read_text())["pruned"] == 3
    with pytest.raises(V4Error, match="judged on table sha256 a+, not the table in use"):
        load_v4_verdict(PR, p, table_sha256="b" * 64)
    missing = load_v4_verdict(PR, tmp_path / "none.json")
    assert not missing.enabled and "not judged yet" in missing.reason
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(V4Error, match="not a V4 verdict file"):
        load_v4_verdict(PR, tmp_path / "bad.json")


def _table_file(tmp_path):
    rows, manifest = synthetic_rows(RUNS, **table_kw())
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    curves.manifest_path(path).write_text(json.dumps(manifest))
    from igla_jax.execution.replay import load_table
    return path, load_table(path)


def test_live_pruner_is_on_only_for_its_preset_and_its_table(tmp_path):
    path, tab = _table_file(tmp_path)
    vp = tmp_path / "v4.json"
    assert not live_pruner(PR, preset="tenth", table_path=path, verdict_path=vp).verdict.enabled   # not judged
    _write(vp, ON, tab.sha256)
    on = live_pruner(PR, preset="tenth", table_path=path, verdict_path=vp)
    assert on.verdict == ON and len(on.models) == 1 and on.models[0].rungs == PS.rungs
    off = live_pruner(PR, preset="quick", table_path=path, verdict_path=vp)
    assert not off.verdict.enabled and "not for preset quick" in off.verdict.reason and not off.models
    _write(vp, ON, "c" * 64)
    refused = live_pruner(PR, preset="tenth", table_path=path, verdict_path=vp)
    assert not refused.verdict.enabled and "refused" in refused.verdict.reason


def test_cli_flag_parses_and_keeps_xgboost_lazy():
    from experiments.race import parse_args
    assert parse_args([]).surrogate == "study" and parse_args(["--surrogate", "off"]).surrogate == "off"
    code = ("import sys, experiments.race as r; from accelerators.surrogate import live_pruner; "
            "from igla_jax.evidence.prereg import load_prereg; "
            "p = live_pruner(load_prereg(), preset='smoke'); assert not p.verdict.enabled, p.verdict; "
            "assert 'xgboost' not in sys.modules, 'xgboost imported'")
    r = subprocess.run([sys.executable, "-c", code], cwd=repo_root(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]


def test_cli_wires_the_pruner_into_a_replay(tmp_path, monkeypatch):
    from experiments.race import main
    path, _ = _table_file(tmp_path)
    monkeypatch.setattr(v4, "default_verdict_path", lambda: tmp_path / "missing.json")
    for flag, role in (("study", "surrogate"), ("off", None)):
        out = tmp_path / f"r-{flag}"
        assert main(["--replay", str(path), "--preset", "tenth", "--seed", "1", "--out", str(out),
                     "--surrogate", flag, "--mup", "off", "--zero-cost", "off", "--ucb", "off"]) == 0
        spec = json.loads((out / "race.json").read_text())["spec"]
        assert spec["roles"]["pruner"] == role and spec["flags"]["surrogate"] == flag
        assert ("v4_verdict" in spec["verdict_sources"]) is (flag == "study")
