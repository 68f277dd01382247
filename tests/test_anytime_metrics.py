"""The harness's anytime metrics (prereg v8) on hand-made trajectories with known answers."""
from __future__ import annotations

import numpy as np
import pytest

from experiments import harness as H
from experiments.anytime_metrics import regret_area, summarise
from igla_jax.curves.truth import selection, true_bpb
from igla_jax.evidence.prereg import load_prereg

PR = load_prereg()
TRUTH = H.Truth(("a", "b", "c"), ("uniform",) * 3, np.array([2.0, 2.3, 3.5]), {"a": 0, "b": 1, "c": 2})


def traj(comps, repeat=0, method="m"):
    return H.Trajectory(method, repeat, 1, tuple(comps), None)


def test_regret_area_integrates_the_capped_incumbent_regret():
    cap = PR.harness_regret_cap
    assert regret_area(traj([]), TRUTH, 100.0, cap) == cap                       # nothing completes: the cap
    # c (regret 1.5, capped at 1.0) at 10 s, b (0.3) at 40 s, a (0) at 70 s
    t = traj([(10.0, "c", 3.4), (40.0, "b", 2.31), (70.0, "a", 2.05)])
    want = (10 * cap + 30 * min(cap, 1.5) + 30 * 0.3 + 30 * 0.0) / 100
    assert regret_area(t, TRUTH, 100.0, cap) == pytest.approx(want)
    # the incumbent follows the observed BPB, not the truth: a worse observation does not replace it
    t2 = traj([(10.0, "b", 2.31), (20.0, "a", 2.4)])
    assert regret_area(t2, TRUTH, 100.0, cap) == pytest.approx((10 * cap + 90 * 0.3) / 100)
    # completions after the budget do not count
    assert regret_area(traj([(150.0, "a", 2.0)]), TRUTH, 100.0, cap) == cap


def test_summarise_reports_tolerances_oracle_multiples_and_a_paired_test():
    good = [traj([(5.0, "a", 2.0)], r, "good") for r in range(12)]
    slow = [traj([(50.0, "b", 2.3), (90.0, "a", 2.0)], r, "slow") for r in range(12)]
    rows = summarise({("good", 1): good, ("slow", 1): slow}, TRUTH, 100.0, PR, oracle=5.0, reference="slow")
    g = next(r for r in rows if r["method"] == "good")
    assert g["tol_0.02"]["median_s"] == 5.0 and g["tol_0.02"]["oracle_multiple"] == 1.0
    assert g["vs_reference"]["sign_test"]["wins"] == 12 and g["vs_reference"]["lower_regret"]
    s = next(r for r in rows if r["method"] == "slow")
    assert s["tol_0.1"]["median_s"] == 90.0 and s["tol_0.1"]["never"] == 0.0 and "vs_reference" not in s
    assert s["tol_0.02"]["oracle_multiple"] == 18.0


def _row(cid, stratum, seed, role, b):
    return {"config_id": cid, "config": {"family": "attn", "width": 32, "depth": 1, "lr": 0.001, "beta": 0.9,
                                         "warmup": 0.0, "wd": 0.0, "dropout": 0.0},
            "stratum": stratum, "seed": seed, "seed_role": role, "status": "ok" if b else "diverged",
            "val_bpb": [b]}


def test_truth_is_the_mean_over_the_extra_seeds_and_a_diverged_run_counts_as_uniform():
    rows = [_row("x", "uniform", 1, "primary", 2.0), _row("x", "uniform", 2, "extra", 2.1),
            _row("x", "uniform", 3, "extra", 2.3), _row("y", "phi", 1, "primary", 2.5),
            _row("y", "phi", 2, "extra", None), _row("y", "phi", 3, "extra", 2.6), _row("z", "phi", 2, "extra", 2.0)]
    t = true_bpb(rows, extra_seeds=(2, 3))
    assert t == pytest.approx({"x": 2.2, "y": (8.0 + 2.6) / 2})   # z lacks seed 3: no truth value


def test_truth_selection_takes_the_near_best_and_each_stratum_top():
    cfg = {"family": "attn", "width": 32, "depth": 1, "lr": 0.001, "beta": 0.9, "warmup": 0.0, "wd": 0.0}
    from igla_jax.search.search_space import config_from_dict
    rows = []
    for i, (st, b) in enumerate([("uniform", 2.0), ("uniform", 2.05), ("uniform", 2.5), ("phi", 2.9), ("phi", 3.0)]):
        c = config_from_dict({**cfg, "dropout": 0.0, "lr": 0.001 * (i + 1)})
        rows.append({"config_id": c.config_id, "config": c.to_dict(), "stratum": st, "seed": 1,
                     "seed_role": "primary", "status": "ok", "val_bpb": [b]})
    got = selection(rows, within=0.10, top=1)
    assert [s for _, s in got] == ["uniform", "uniform", "phi"] and len(got) == 3


def test_the_cli_loads_the_peers_and_writes_its_rows(tmp_path, capsys):
    pytest.importorskip("syne_tune")
    from experiments import anytime_metrics
    out = tmp_path / "m.json"
    assert anytime_metrics.main(["--methods", "asha", "synetune_asha", "--peers", "--repeats", "2", "--workers", "1",
                                 "--reference", "synetune_asha", "--out", str(out)]) == 0
    import json
    d = json.loads(out.read_text())
    rows = {r["method"]: r for r in d["rows"]}
    assert set(rows) == {"asha", "synetune_asha"} and rows["asha"]["repeats"] == 2
    assert rows["asha"]["vs_reference"]["reference"] == "synetune_asha" and "vs_reference" not in rows["synetune_asha"]
    assert 0.0 <= rows["asha"]["anytime_regret"]["mean"] <= PR.harness_regret_cap
    assert rows["asha"]["replay_wall_s"]["mean"] > 0 and set(d["verdict_files"]) >= {"assertions/v3_verdict.json"}
    assert "synetune_asha @ 1 worker(s): 2 repeats" in capsys.readouterr().err
    assert anytime_metrics.main(["--methods", "no_such_method"]) == 2
    assert "unknown method" in capsys.readouterr().err


def test_fewer_repeats_for_a_slow_method_pair_the_repeats_both_ran(tmp_path, capsys):
    from experiments import anytime_metrics
    out = tmp_path / "m.json"
    assert anytime_metrics.main(["--methods", "asha", "asha_capped", "random_full", "--repeats", "3",
                                 "--repeats-multi", "2", "--workers", "1", "2", "--fewer", "asha_capped@1=1",
                                 "random_full@2=0", "--out", str(out)]) == 0
    import json
    rows = {(r["method"], r["workers"]): r for r in json.loads(out.read_text())["rows"]}
    assert set(rows) == {("asha", 1), ("asha", 2), ("asha_capped", 1), ("asha_capped", 2), ("random_full", 1)}
    assert rows[("asha_capped", 1)]["repeats"] == 1 and rows[("asha", 1)]["repeats"] == 3
    st = rows[("asha_capped", 1)]["vs_reference"]["sign_test"]
    assert st["wins"] + st["losses"] + st["ties"] == 1
    for bad in (["--fewer", "asha"], ["--fewer", "nope@1=2"], ["--fewer", "asha@3=1"], ["--fewer", "asha@1=-1"]):
        assert anytime_metrics.main(["--methods", "asha", "--workers", "1", *bad]) == 2
        assert "error: --fewer" in capsys.readouterr().err


def test_the_cache_replays_once_and_summarises_the_same(tmp_path, capsys):
    from experiments import anytime_metrics
    args = ["--methods", "asha", "random_full", "--repeats", "2", "--workers", "1", "--cache", str(tmp_path / "c")]
    assert anytime_metrics.main([*args, "--out", str(tmp_path / "a.json")]) == 0
    assert "random_full @ 1 worker(s): 2 repeats" in capsys.readouterr().err
    assert anytime_metrics.main([*args, "--out", str(tmp_path / "b.json")]) == 0
    assert "random_full: 2 trajectories from" in capsys.readouterr().err
    import json
    a, b = (json.loads((tmp_path / f).read_text())["rows"] for f in ("a.json", "b.json"))
    assert a == b


def test_markdown_puts_every_method_of_both_files_in_one_table(tmp_path, capsys):
    from experiments import anytime_metrics
    import json
    assert anytime_metrics.main(["--methods", "asha", "asha_capped", "--repeats", "2", "--workers", "1",
                                 "--out", str(tmp_path / "a.json")]) == 0
    doc = json.loads((tmp_path / "a.json").read_text())
    asha = [r for r in doc["rows"] if r["method"] == "asha"]
    other = dict(doc, table="held.jsonl", rows=asha + [dict(asha[0], workers=4)])   # two rows of one method
    (tmp_path / "b.json").write_text(json.dumps(other))
    capsys.readouterr()
    assert anytime_metrics.main(["--markdown", str(tmp_path / "a.json"), str(tmp_path / "b.json")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("| method |") and "held 1w" in lines[0] and len(lines) == 4
    capped = next(x for x in lines if x.startswith("| asha_capped |"))
    cells = [c.strip() for c in capped.split("|")[1:-1]]
    assert cells[2:] == ["-"] * 5 and "[2 reps]" in cells[1] and " / " in cells[1]   # 1w: regret / x oracle
    a = [c.strip() for c in next(x for x in lines if x.startswith("| asha |")).split("|")[1:-1]]
    assert " / " in a[4] and " / " in a[5] and a[6] == "-"   # one line per method, its held-out 1w and 4w cells
