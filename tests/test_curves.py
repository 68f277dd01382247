"""The learning-curve table: format, append-only writer, plan, and live race == recorded curve."""
from __future__ import annotations

import json

import pytest

from igla_jax import curves
from igla_jax.evidence.ledger_row import CodeVersion
from igla_jax.execution.presets import PRESETS
from igla_jax.execution.race_runner import run_race
from igla_jax.search.search_space import SearchSpace
from igla_jax.evidence.prereg import repo_root

V = CodeVersion("0" * 40, False)


def test_ladder_contains_the_rungs_and_the_points_between():
    assert curves.ladder_for((100, 300, 900, 2700)) == (100, 200, 300, 600, 900, 1800, 2700)
    assert curves.ladder_for((4, 12)) == (4, 8, 12)


def test_plan_strata_are_disjoint_balanced_and_interleaved():
    from accelerators.phi_grid import phi_grid
    space = PRESETS["tenth"].space
    p = curves.plan(space, lambda f: phi_grid(f, space), families=("attn", "jepa", "hybrid"), per_stratum=10,
                    extra_every=5, primary_seed=1, extra_seeds=(2, 3))
    prim = [r for r in p if r.seed_role == "primary"]
    assert len(prim) == 60 and len({(r.config.config_id) for r in prim}) == 60
    phi_ids = {c.config_id for f in ("attn", "jepa", "hybrid") for c in phi_grid(f, space)}
    assert all((r.config.config_id in phi_ids) == (r.stratum == "phi") for r in p)
    assert len([r for r in p if r.seed_role == "extra"]) == 6 * 2 * 2  # positions 0 and 5 of each of 6 strata
    # the first 6 primaries cover every (family, stratum): a partial table is balanced
    assert {(r.config.family, r.stratum) for r in prim[:6]} == {(f, s) for f in ("attn", "jepa", "hybrid")
                                                                 for s in ("phi", "uniform")}
    # extra seeds follow their primary directly
    for i, r in enumerate(p):
        if r.seed_role == "extra":
            assert p[i - 1].config == r.config


def test_a_held_out_plan_draws_no_config_of_the_development_table_and_seed_0_is_the_committed_draw():
    from accelerators.phi_grid import phi_grid
    space = PRESETS["tenth"].space
    dev = curves.read_table(repo_root() / "assertions" / "curves_tenth.jsonl")
    dev_ids = frozenset(r["config_id"] for r in dev.rows)
    args = dict(families=("attn", "jepa", "hybrid"), extra_every=4, primary_seed=1, extra_seeds=(2, 3))
    committed = curves.plan(space, lambda f: phi_grid(f, space), per_stratum=64, **args)
    assert {r.config.config_id for r in committed} == dev_ids      # plan seed 0, no exclusion: the committed draw
    held = curves.plan(space, lambda f: phi_grid(f, space), per_stratum=20, seed=1, exclude=dev_ids, **args)
    prim = [r for r in held if r.seed_role == "primary"]
    assert len(prim) == 120 and not {r.config.config_id for r in held} & dev_ids
    phi_ids = {c.config_id for f in args["families"] for c in phi_grid(f, space)}
    assert sum(r.stratum == "phi" for r in prim) == 60 and all((r.config.config_id in phi_ids) == (r.stratum == "phi")
                                                                for r in held)
    assert len(held) == 120 + 6 * 5 * 2    # every fourth of 20 per stratum (0, 4, ..., 16) on both extra seeds
    # asking for more phi configs than the development table left draws all 64 that are left, no more
    many = curves.plan(space, lambda f: phi_grid(f, space), per_stratum=80, seed=1, exclude=dev_ids, **args)
    assert sum(r.stratum == "phi" and r.seed_role == "primary" for r in many) == 3 * 64


def _row(**kw):
    base = {"config_id": "x", "config": None, "family": "attn", "stratum": "uniform", "seed": 1, "seed_role": "primary",
            "status": "ok", "ladder": [4, 8], "val_bpb": [3.0, 2.9], "segment_s": [0.1, 0.1], "eval_s": [0.1, 0.1],
            "train_bits": [3.1], "chunk": 32, "shape": "attn/w16/d2", "sha": "0" * 40, "dirty": False, "ts": "t"}
    from igla_jax.search.search_space import Config
    c = Config("attn", 16, 2, 1e-3, 0.9, 0.0, 0.0, 0.0)
    base.update(config=c.to_dict(), config_id=c.config_id)
    base.update(kw)
    return base


def test_writer_is_append_only_cuts_a_torn_tail_and_rejects_bad_rows(tmp_path):
    p = tmp_path / "t.jsonl"
    w = curves.TableWriter(p)
    w.append(_row())
    with pytest.raises(curves.CurveError, match="already recorded"):
        w.append(_row())
    with pytest.raises(curves.CurveError, match="val_bpb"):
        w.append(_row(seed=2, val_bpb=[3.0, -1.0]))
    with open(p, "ab") as f:
        f.write(b'{"config_id": "tor')  # a kill mid-write
    w2 = curves.TableWriter(p)
    assert len(w2.table.rows) == 1 and p.read_bytes().endswith(b"\n")
    w2.append(_row(seed=2))
    t = curves.read_table(p)
    assert [r["seed"] for r in t.rows] == [1, 2]
    assert t.bpb_at(t.rows[0]["config_id"], 1, 8) == 2.9
    with pytest.raises(curves.CurveError, match="no evaluation at step 12"):
        t.bpb_at(t.rows[0]["config_id"], 1, 12)
    with pytest.raises(curves.CurveError, match="no recorded run"):
        t.bpb_at(t.rows[0]["config_id"], 9, 8)
    lines = p.read_text().splitlines()
    p.write_text(lines[0] + "\n" + lines[0] + "\n")
    with pytest.raises(curves.CurveError, match="line 2: .* already recorded on line 1"):
        curves.read_table(p)


def test_a_live_race_reproduces_the_recorded_curves_step_for_step(tmp_path):
    """Every rung BPB of a live smoke race equals the recorded table's BPB at that step, bit for bit."""
    ps = PRESETS["smoke"]
    live = run_race(seed=5, preset="smoke", out=tmp_path / "live")
    search = live.state.config.search_seed
    trained = [r for r in live.rows if r["status"] == "trained" and r["seed"] == search]
    assert trained
    ladder = curves.ladder_for(live.state.config.rungs)
    table = tmp_path / "curves.jsonl"
    w = curves.TableWriter(table)
    cfgs = {t.config.config_id: t.config for t in live.state.trials}
    for cid, cfg in sorted(cfgs.items()):
        w.append(curves.record_run(curves.PlannedRun(cfg, "uniform", search, "primary"), context=ps.context,
                                   batch=ps.batch, head_dim=ps.space.head_dim, horizon=live.state.config.rungs[-1],
                                   ladder=ladder, version=V))
    t = curves.read_table(table)
    for r in trained:
        assert t.bpb_at(r["config_id"], search, r["step"]) == r["bpb"], r
    assert all(len(row["train_bits"]) >= 1 and all(s >= 0 for s in row["segment_s"]) for row in t.rows)


def test_manifest_counts_and_hash(tmp_path):
    p = tmp_path / "t.jsonl"
    curves.TableWriter(p).append(_row())
    m = tmp_path / "t.manifest.json"
    curves.write_manifest(m, p, {"preset": "smoke"})
    doc = json.loads(m.read_text())
    assert doc["counts"]["runs"] == 1 and doc["counts"]["by_family_stratum_role"] == {"attn/uniform/primary": 1}
    assert doc["table_sha256"] == curves.file_sha256(p) and len(doc["table_sha256"]) == 64


def _table(rows):
    return curves.CurveTable(__import__("pathlib").Path("mem"), tuple(rows))


def test_rank_agreement_and_crossing_share_on_a_known_case():
    from igla_jax.curves.stats import rank_agreement
    from igla_jax.search.search_space import Config
    rows = []
    early, late = [3.0, 3.1, 3.2, 3.3], [2.0, 2.2, 2.1, None]  # one crossing pair (2, 3); the last diverged
    for i, (a, b) in enumerate(zip(early, late)):
        c = Config("attn", 16, 2, 1e-3 * (i + 1), 0.9, 0.0, 0.0, 0.0)
        rows.append(_row(config=c.to_dict(), config_id=c.config_id, val_bpb=[a, b],
                         status="ok" if b is not None else "diverged"))
    ag = rank_agreement(rows, 4, 8)
    assert ag["crossing_share"] == 1 / 6 and 0.7 < ag["spearman"] < 1.0
    same = rank_agreement([dict(r, val_bpb=[r["val_bpb"][0]] * 2) for r in rows[:3]], 4, 8)
    assert same["crossing_share"] == 0.0 and same["spearman"] == 1.0


def test_seed_spread_and_summary():
    from igla_jax.curves.stats import seed_spread, summary
    rows = [_row(seed=1, val_bpb=[3.0, 2.0]), _row(seed=2, seed_role="extra", val_bpb=[3.0, 2.2])]
    t = _table(rows)
    sp = seed_spread(t, 8)
    assert sp["configs"] == 1 and abs(sp["pooled_sd"] - 0.1414) < 1e-3
    s = summary(t, (4, 8))
    assert s["families"]["attn"]["best_top_bpb"] == 2.0 and s["families"]["attn"]["configs"] == {"phi": 0, "uniform": 1}


def test_recorder_refuses_another_plan_on_rerun(tmp_path, capsys):
    from experiments import record_curves
    out = tmp_path / "c.jsonl"
    args = ["--preset", "smoke", "--out", str(out), "--families", "attn", "--per-stratum", "1", "--extra-every", "0"]
    assert record_curves.main(args + ["--limit", "1"]) == 0
    m = json.loads(out.with_name("c.manifest.json").read_text())
    assert m["counts"]["runs"] == 1 and m["plan"]["per_stratum"] == 1 and len(m["commands"]) == 1
    assert m["compile_s"] and m["table_sha256"] == curves.file_sha256(out)
    assert record_curves.main(args[:-2] + ["--extra-every", "3", "--limit", "1"]) == 2
    assert "another plan" in capsys.readouterr().err
    assert record_curves.main(args) == 0  # the same plan continues where it stopped
    assert len(curves.read_table(out).rows) == 2


def test_recorded_curve_equals_a_live_trial_across_chunks_with_dropout_and_ema(tmp_path):
    """Ladder points off the rungs and chunk boundaries, dropout and a traced EMA beta: still bit for bit."""
    from igla_jax.search.search_space import Config
    from igla_jax.training.train import run_trial
    cfg = Config("jepa", 32, 1, 3e-3, 0.996, 0.1, 0.05, 0.2)
    row = curves.record_run(curves.PlannedRun(cfg, "uniform", 9, "primary"), context=32, batch=4, head_dim=8,
                            horizon=150, ladder=(50, 100, 150), version=V)
    mc, tc = cfg.to_model_config(context=32, head_dim=8), cfg.to_train_config(seed=9, total_steps=150, batch=4)
    a = run_trial(mc, tc, to_step=100, save_checkpoint=tmp_path / "c.msgpack")  # live: rungs 100 and 150
    b = run_trial(mc, tc, to_step=150, from_checkpoint=tmp_path / "c.msgpack")
    assert [a.val_bpb, b.val_bpb] == row["val_bpb"][1:]
