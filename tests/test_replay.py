"""Replayed races: live == replay step for step, named errors for unrecorded requests, the simulated clock."""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest

from igla_jax import curves
from igla_jax.evidence.ledger import read_ledger
from igla_jax.evidence.ledger_row import CodeVersion
from igla_jax.execution.presets import PRESETS, RaceSetupError
from igla_jax.execution.race_runner import run_race, run_replay
from igla_jax.execution.replay import ReplayBackend, ReplayError, synthetic_rows, synthetic_table, table_space
from igla_jax.search.interfaces import RandomSampler
from igla_jax.search.race import Confirm, Reproduce, Train
from igla_jax.search.search_space import Config, sample

V = CodeVersion("0" * 40, False)
A = Config("attn", 16, 2, 1e-3, 0.9, 0.0, 0.0, 0.0)        # shape attn/w16/d2
A2 = dataclasses.replace(A, lr=3e-3)                          # same shape
B = Config("attn", 32, 2, 1e-3, 0.9, 0.0, 0.0, 0.0)         # shape attn/w32/d2


def search_key(rows):
    """What a replay must reproduce of a live race's search phase (not ts, wall time, run id, notes)."""
    return [(r["event_id"], r["status"], r["config_id"], r["seed"], r["step"], r["bpb"], r.get("decided_by"),
             r.get("score"), r["extra"].get("trial_id"), r["extra"].get("rung")) for r in rows
            if r["extra"].get("action") in ("train", "promote", "prune")]


def trials(state):
    return [(t.trial_id, t.config, t.status, [(x.rung, x.step, x.bpb) for x in t.results]) for t in state.trials]


def assert_same_race(live, rep):
    live_rows = [r for r in live.rows if r["extra"].get("action") not in ("confirm", "reproduce")]
    assert search_key(rep.rows) == search_key(live_rows) and len(rep.rows) == len(live_rows)
    assert trials(rep.state) == trials(live.state) and rep.summary.champion == live.summary.champion
    for lr, rr in zip(live_rows, rep.rows):
        assert rr["extra"]["replayed"]["table"] == rep.table and rr["note"].startswith("replayed from ")
        if lr["status"] == "pruned":
            assert rr["note"].endswith(lr["note"])


def write_table(path: Path, rows, manifest) -> Path:
    w = curves.TableWriter(path)
    for r in rows:
        w.append(r)
    curves.write_manifest(curves.manifest_path(path), path, manifest)
    return path


# ---------------------------------------------------------------- live == replay
def test_replay_of_a_live_smoke_race_gives_its_decisions_step_for_step(tmp_path):
    """Real training: a table recorded (curves.record_run) on a live smoke race's configs and search seed."""
    ps = PRESETS["smoke"]
    live = run_race(seed=5, preset="smoke", out=tmp_path / "live")
    rc = live.state.config
    ladder = curves.ladder_for(rc.rungs)
    rows = [curves.record_run(curves.PlannedRun(t.config, "uniform", rc.search_seed, "primary"), context=ps.context,
                              batch=ps.batch, head_dim=ps.space.head_dim, horizon=rc.rungs[-1], ladder=ladder,
                              version=V) for t in live.state.trials]
    shapes = {r["shape"]: {"train_s": 1.0, "eval_s": 0.5} for r in rows}
    table = write_table(tmp_path / "curves_smoke.jsonl", rows,
                        {"preset": "smoke", "rungs": list(rc.rungs), "ladder": list(ladder), "compile_s": shapes,
                         "seeds": {"primary": rc.search_seed}, "context": ps.context, "batch": ps.batch})
    rep = run_replay(seed=5, preset="smoke", table=table, out=tmp_path / "replay", sampler=RandomSampler(ps.space))
    assert any(r["status"] == "promoted" for r in rep.rows) and any(r["status"] == "pruned" for r in rep.rows)
    assert_same_race(live, rep)
    assert rep.rows == tuple(read_ledger(tmp_path / "replay" / "ledger.jsonl").rows)


@dataclasses.dataclass(frozen=True)
class _Res:
    val_bpb: float
    status: str
    step: int
    params: int
    tokens_per_s: float
    wall_s: float
    test_bpb: float | None = None


def curve(cfg: Config, seed: int, step: int) -> float | None:
    """A known learning curve; lr 3e-3 width 96 configs (good at 300 steps) diverge in (300, 600]."""
    if cfg.lr == 3e-3 and cfg.width == 96 and step > 300:
        return None
    q = abs(math.log(cfg.lr / 3e-3)) + (96 - cfg.width) / 128 + abs(cfg.depth - 2) / 4 + cfg.dropout + cfg.warmup
    return 2.0 + q + 2.0 * (100 / step) ** 0.5 + cfg.wd / 7 + 1e-4 * (seed % 97)


class CurveTrainer:
    """A live trainer whose every result is `curve` (checkpoints are step files, so nothing retrains)."""

    def run_trial(self, mc, tc, *, to_step, from_checkpoint=None, save_checkpoint=None, progress=None, eval_test=False):
        cfg = Config(mc.family, mc.width, mc.depth, tc.lr, mc.ema_beta if mc.family == "jepa" else tc.beta1,
                     tc.warmup_frac, tc.weight_decay, mc.dropout)
        start = json.loads(Path(from_checkpoint).read_text())["step"] if from_checkpoint else 0
        b = curve(cfg, tc.seed, to_step)
        if b is None:
            return _Res(math.nan, "diverged", max(start + 1, 600), 1, 1.0, 0.01)
        if save_checkpoint is not None:
            Path(save_checkpoint).parent.mkdir(parents=True, exist_ok=True)
            Path(save_checkpoint).write_text(json.dumps({"step": to_step}))
        return _Res(b, "ok", to_step, 1, 1.0, 0.01, b + 0.01 if eval_test else None)


@pytest.mark.parametrize("seed", [3, 11])
def test_replay_of_a_live_quick_race_with_a_curve_trainer(tmp_path, seed):
    """27 trials, three rungs, promotions, prunes and divergences: the same rows and states as live."""
    ps = PRESETS["quick"]
    live = run_race(seed=seed, preset="quick", out=tmp_path / "live", trainer=CurveTrainer())
    rc = live.state.config
    rows, manifest = synthetic_rows([(t.config, rc.search_seed, "primary") for t in live.state.trials], bpb=curve,
                                    segment_s=lambda c, s, i: 1.0, ladder=curves.ladder_for(rc.rungs), rungs=rc.rungs,
                                    primary_seed=rc.search_seed, compile_s={}, preset="quick")
    manifest["compile_s"] = {r["shape"]: {"train_s": 2.0, "eval_s": 1.0} for r in rows}
    table = write_table(tmp_path / "curves_quick.jsonl", rows, manifest)
    rep = run_replay(seed=seed, preset="quick", table=table, out=tmp_path / "replay", sampler=RandomSampler(ps.space))
    assert {r["status"] for r in rep.rows} == {"trained", "promoted", "pruned", "diverged"}
    assert_same_race(live, rep)


# ---------------------------------------------------------------- only what was recorded
def _train(aid, cfg, frm, to, seed=7, rung=0):
    return Train(aid, f"t{aid:04d}", cfg, seed, rung, frm, to, 12, None, None, None, None)


def small_table(**kw):
    segs = {A: (1.0, 2.0, 4.0), A2: (1.0, 2.0, 4.0), B: (3.0, 3.0, 3.0)}
    args = dict(bpb=lambda c, s, step: 3.0 - step / 100 - c.lr, segment_s=lambda c, s, i: segs[c][i],
                ladder=(4, 8, 12), rungs=(4, 12), primary_seed=7, eval_s=0.5,
                compile_s={"attn/w16/d2": 10.0, "attn/w32/d2": 20.0}, preset="smoke")
    args.update(kw)
    return synthetic_table([(A, 7, "primary"), (A2, 7, "primary"), (B, 7, "primary")], **args)


def test_unrecorded_requests_raise_errors_that_name_them():
    be = ReplayBackend(small_table())
    other = dataclasses.replace(A, wd=0.2)
    with pytest.raises(ReplayError, match=f"no recorded run of config {other.config_id} .* on seed 7"):
        be.submit(_train(0, other, 0, 4), 0.0)
    with pytest.raises(ReplayError, match=f"no recorded run of config {A.config_id} .* on seed 8"):
        be.submit(_train(0, A, 0, 4, seed=8), 0.0)
    with pytest.raises(ReplayError, match=f"config {A.config_id} .* seed 7 has no evaluation at step 6"):
        be.submit(_train(0, A, 0, 6), 0.0)
    with pytest.raises(ReplayError, match=f"Confirm of config {A.config_id} on victory seed 42 .* test BPB"):
        be.submit(Confirm(3, A, 42, 12), 0.0)
    no_b = ReplayBackend(small_table(compile_s={"attn/w16/d2": 10.0}))
    with pytest.raises(ReplayError, match="no compile seconds for shape 'attn/w32/d2'"):
        no_b.submit(_train(0, B, 0, 4), 0.0)
    assert be.in_flight() == 0
    # a race whose sampler leaves the table's configs fails on the first unrecorded one, naming config and seed
    with pytest.raises(ReplayError, match=r"no recorded run of config [0-9a-f]{12} \(.*\) on seed 7"):
        run_replay(seed=1, preset="smoke", table=small_table(), sampler=RandomSampler(PRESETS["smoke"].space),
                   version=V)
    with pytest.raises(RaceSetupError, match="recorded for preset 'smoke'"):
        run_replay(seed=1, preset="quick", table=small_table(), version=V)


def test_reproduce_is_answered_from_the_recorded_run_and_divergence_is_recorded():
    dies = small_table(bpb=lambda c, s, step: None if c == B and step > 4 else 3.0 - step / 100)
    be = ReplayBackend(dies)
    be.submit(Reproduce(0, A, 7, 12, 2.88), 0.0)
    be.submit(_train(1, B, 4, 12, rung=1), 0.0)
    f0, f1 = be.poll(), be.poll()
    assert (f0.action_id, f0.result.val_bpb, f0.result.step) == (0, 3.0 - 12 / 100, 12)
    assert f0.result.wall_s == 10.0 + 1 + 2 + 4 + 0.5                  # compile + every segment + one evaluation
    assert (f1.result.status, f1.result.step) == ("diverged", 8) and math.isnan(f1.result.val_bpb)
    assert f1.finish_s == f0.finish_s + 20.0 + 3.0                     # the diverged segment only, no evaluation


# ---------------------------------------------------------------- the simulated clock
def test_finish_times_with_one_and_two_workers_and_compile_once_per_worker_and_shape():
    one = ReplayBackend(small_table(), workers=1)
    one.submit(_train(0, A, 0, 4), 0.0)
    one.submit(_train(1, B, 0, 4), 0.0)              # waits for the only worker
    f = one.poll()
    assert (f.action_id, f.start_s, f.finish_s, f.worker, f.meta["compile_s"]) == (0, 0.0, 11.5, 0, 10.0)
    one.submit(_train(2, A, 4, 12, rung=1), one.now)
    f = one.poll()
    assert (f.action_id, f.start_s, f.finish_s, f.meta["compile_s"]) == (1, 11.5, 35.0, 20.0)
    f = one.poll()
    assert (f.action_id, f.issued_s, f.start_s, f.finish_s, f.meta["compile_s"]) == (2, 11.5, 35.0, 41.5, 0.0)
    assert one.poll() is None and one.compile_total_s == 30.0

    two = ReplayBackend(small_table(), workers=2)
    two.submit(_train(0, A, 0, 4), 0.0)
    two.submit(_train(1, B, 0, 4), 0.0)
    assert two.poll().finish_s == 11.5
    two.submit(_train(2, A, 4, 12, rung=1), two.now)  # worker 0 is free and has compiled A
    two.submit(_train(3, B, 0, 8), two.now)           # queued until a worker frees
    f2, f1, f3 = two.poll(), two.poll(), two.poll()
    assert [(f.action_id, f.worker, f.finish_s) for f in (f2, f1, f3)] == [(2, 0, 18.0), (1, 1, 23.5), (3, 0, 44.5)]
    assert f3.meta["compile_s"] == 20.0 and two.compile_total_s == 50.0  # B compiled on both workers
    assert two.now == 44.5


def test_ties_break_by_action_id_and_cancel_frees_the_worker():
    from igla_jax.execution.backends import Backend
    be = ReplayBackend(small_table(), workers=2)
    assert isinstance(be, Backend)
    be.submit(_train(9, A, 0, 4), 0.0)
    be.submit(_train(4, A2, 0, 4), 0.0)            # identical cost and finish time 11.5
    assert [be.poll().action_id, be.poll().action_id] == [4, 9]
    be = ReplayBackend(small_table(), workers=1)
    for i, c in enumerate((A, B, A2)):
        be.submit(_train(i, c, 0, 4), 0.0)
    assert be.cancel(2) and be.cancel(0) and not be.cancel(7)   # one queued, one running
    f = be.poll()
    assert (f.action_id, f.start_s, f.finish_s) == (1, 0.0, 23.5) and be.poll() is None


def tenth_like_table(n_per_family: int = 40):
    ps = PRESETS["tenth"]
    rungs = ps.rungs
    cfgs = [c for f in ("attn", "jepa", "hybrid") for c in sample(0, f, n_per_family, ps.space)]
    ladder = curves.ladder_for(rungs)
    return synthetic_table([(c, 7, "primary") for c in cfgs], bpb=curve, preset="tenth", ladder=ladder, rungs=rungs,
                           segment_s=lambda c, s, i: c.width * c.depth * (ladder[i] - ([0, *ladder][i])) / 1e4,
                           primary_seed=7, eval_s=0.25, compile_s={curves.shape_key(c): 5.0 for c in cfgs},
                           batch=ps.batch, context=ps.context)


def test_replayed_races_on_more_workers_finish_sooner_in_simulated_time(tmp_path):
    tab = tenth_like_table()
    runs = {w: run_replay(seed=2, preset="tenth", table=tab, workers=w, version=V) for w in (1, 4, 16)}
    assert runs[16].sim_s < runs[4].sim_s < runs[1].sim_s
    for w, o in runs.items():
        res = [r for r in o.rows if r["status"] in ("trained", "diverged")]
        assert o.summary.counters.started == 81 and o.state.config.workers == w
        if w == 1:  # one worker: the clock is the sum of every action's charged seconds
            assert o.sim_s == pytest.approx(sum(r["wall_s"] for r in res), abs=1e-3)
        charged = [(r["extra"]["replayed"]["worker"], r["config"]["family"], r["config"]["width"], r["config"]["depth"])
                   for r in res if r["extra"]["replayed"]["compile_s"] > 0]
        assert len(charged) == len(set(charged)) and o.compile_s == pytest.approx(5.0 * len(charged))
        by_arrival = sorted(o.rows, key=lambda r: r["extra"]["replayed"]["arrival"])
        times = [r["extra"]["replayed"]["sim_time_s"] for r in by_arrival]
        assert times == sorted(times) and [r["event_id"] for r in o.rows] == sorted(r["event_id"] for r in o.rows)
    # asynchronous promotion: with 4 workers results arrive out of action-id order
    arr = [r["event_id"] for r in sorted(runs[4].rows, key=lambda r: r["extra"]["replayed"]["arrival"])]
    assert arr != sorted(arr)
    # --seed drives the race's decisions; the same seed gives the same race
    again = run_replay(seed=2, preset="tenth", table=tab, workers=4, version=V)
    other = run_replay(seed=3, preset="tenth", table=tab, workers=4, version=V)
    assert trials(again.state) == trials(runs[4].state) and trials(other.state) != trials(runs[4].state)


def test_table_space_proposes_only_recorded_configs_of_the_stratum():
    tab = small_table()
    sp = table_space(tab)
    assert sp.size("attn") == 3 and sp.size("jepa") == 0 and [sp.config_at("attn", i) for i in range(3)] == [A, A2, B]
    assert table_space(tab, strata=("phi",)).size("attn") == 0 and sp.contains(B)
    o = run_replay(seed=4, preset="smoke", table=tab, sampler=RandomSampler(sp), version=V)
    assert {t.config for t in o.state.trials} <= {A, A2, B} and o.state.exhausted  # families run dry, cleanly


def test_drawn_training_seed_is_one_recorded_seed_per_config():
    tab = synthetic_table([(A, 7, "primary"), (A, 8, "extra"), (A, 9, "extra"), (B, 7, "primary")],
                          bpb=lambda c, s, step: 3.0 - step / 100 + s / 1000, segment_s=lambda c, s, i: 1.0,
                          ladder=(4, 8, 12), rungs=(4, 12), primary_seed=7, compile_s={"attn/w16/d2": 1.0,
                                                                                     "attn/w32/d2": 1.0})
    picked = set()
    for draw in range(12):
        be = ReplayBackend(tab, draw_seed=draw)
        be.submit(_train(0, A, 0, 4), 0.0)
        be.submit(_train(1, B, 0, 4), 0.0)
        f0, f1 = be.poll(), be.poll()
        be.submit(_train(2, A, 4, 12, rung=1), be.now)
        f2 = be.poll()
        assert f0.meta["trained_seed"] == f2.meta["trained_seed"] and f1.meta["trained_seed"] == 7
        assert f0.result.val_bpb == 3.0 - 0.04 + f0.meta["trained_seed"] / 1000
        picked.add(f0.meta["trained_seed"])
    assert picked == {7, 8, 9}


# ---------------------------------------------------------------- the CLI
def test_cli_replay_writes_a_marked_ledger_and_leaderboard(tmp_path, capsys):
    from experiments.race import main
    tab = tenth_like_table(20)
    rows, manifest = synthetic_rows([(tab.runs[k].config, 7, "primary") for k in tab.order], bpb=curve, preset="tenth",
                                    ladder=tab.ladder, rungs=tab.rungs, primary_seed=7, eval_s=0.25,
                                    segment_s=lambda c, s, i: 1.0, compile_s=dict(tab.compile_s))
    table = write_table(tmp_path / "curves_tenth.jsonl", rows, manifest)
    out = tmp_path / "out"
    rc = main(["--preset", "tenth", "--replay", str(table), "--seed", "3", "--workers", "4", "--out", str(out),
               "--mup", "off", "--zero-cost", "off"])
    text = capsys.readouterr().out
    assert rc == 0 and "simulated wall time" in text and "4 worker(s)" in text
    led = read_ledger(out / "ledger.jsonl").rows
    assert led and all(r["extra"]["replayed"]["table_sha256"] == curves.file_sha256(table) for r in led)
    assert json.loads((out / "race.json").read_text())["spec"]["replay"]["workers"] == 4
    import sqlite3
    con = sqlite3.connect(out / "race.db")
    assert con.execute("SELECT COUNT(*) FROM trials").fetchone()[0] == 60  # every trial (20 per family: exhausted)
    con.close()
    for argv, msg in ((["--replay", str(table), "--sampler", "phi"], "--sampler phi is not available with --replay"),
                      (["--workers", "4"], "--workers: simulated workers are for --replay only"),
                      (["--replay", str(tmp_path / "none.jsonl")], "curve table not found")):
        assert main(["--preset", "tenth", "--out", str(tmp_path / "x"), *argv]) == 2
        assert msg in capsys.readouterr().err
