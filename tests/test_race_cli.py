"""The race end to end: executor + ledger resume with a fake trainer (fast), then the real CLI (smoke preset)."""
from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from igla_jax.evidence.ledger import CANONICAL_LEDGER, read_ledger
from igla_jax.execution.presets import RaceSetupError, parse_budget
from igla_jax.execution.race_runner import run_race

REPO = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- fake trainer (pure function of the configs)
@dataclasses.dataclass(frozen=True)
class Result:
    val_bpb: float
    status: str
    step: int
    params: int
    tokens_per_s: float
    wall_s: float
    test_bpb: float | None = None


class Crash(Exception):
    """Stands in for kill -9 in-process: escapes run_race with nothing cleaned up."""


class FakeTrainer:
    """run_trial contract: continues from the checkpoint's step, saves one, calls progress; deterministic."""

    def __init__(self, crash_at: int | None = None, sleep_s: float = 0.0, crash_seed: int | None = None,
                 test_offset: float = 0.01):
        self.calls, self.crash_at, self.sleep_s, self.crash_seed = 0, crash_at, sleep_s, crash_seed
        self.test_offset = test_offset
        self.eval_tests: list[tuple[int, bool]] = []   # (seed, eval_test) of every call

    def run_trial(self, mc, tc, *, to_step, from_checkpoint=None, save_checkpoint=None, progress=None,
                  eval_test=False):
        self.calls += 1
        self.eval_tests.append((tc.seed, eval_test))
        if (self.crash_at is not None and self.calls == self.crash_at) or tc.seed == self.crash_seed:
            raise Crash()
        start = 0
        if from_checkpoint is not None:
            start = json.loads(Path(from_checkpoint).read_text())["step"]  # must exist: never retrain
        for s in range(start, to_step, max(1, (to_step - start) // 3)):
            time.sleep(self.sleep_s)
            if progress is not None:
                progress(s, to_step, 5.0)
        q = abs(math.log(tc.lr / 3e-3)) + (96 - mc.width) / 128 + abs(mc.depth - 2) / 4 + mc.dropout
        bpb = 2.0 + q + 2.0 * (100 / to_step) ** 0.5 + 1e-4 * (tc.seed - 42) + 1e-5 * (hash(mc) % 7)
        if save_checkpoint is not None:
            Path(save_checkpoint).parent.mkdir(parents=True, exist_ok=True)
            Path(save_checkpoint).write_text(json.dumps({"step": to_step}))
        return Result(bpb, "ok", to_step, 1000, 1e4, 0.01, bpb + self.test_offset if eval_test else None)


class PopulationTrainer(FakeTrainer):
    """Also offers run_population (same results as one by one) and says it always pays."""

    def __init__(self):
        super().__init__()
        self.populations: list[int] = []

    def population_pays(self, mc, n):
        return True

    def run_population(self, mc, tcs, *, to_step, from_checkpoints, save_checkpoints, progress=None,
                       eval_tests=None):
        self.populations.append(len(tcs))
        mcs = mc if isinstance(mc, list) else [mc] * len(tcs)
        assert len({m.shape() for m in mcs}) == 1, "a population is one compiled shape"
        return [self.run_trial(m, tc, to_step=to_step, from_checkpoint=f, save_checkpoint=s, progress=progress,
                               eval_test=e)
                for m, tc, f, s, e in zip(mcs, tcs, from_checkpoints, save_checkpoints, eval_tests)]


def key_rows(rows):
    """What must be identical between an uninterrupted and a resumed run (not ts, wall time, run id)."""
    return [(r.get("event_id"), r["status"], r["config_id"], r["seed"], r["step"], r["bpb"], r.get("decided_by"),
             r.get("score"), (r.get("extra") or {}).get("trial_id"), r.get("test_bpb")) for r in rows]


def board(db: Path):
    con = sqlite3.connect(db)
    try:
        ev = con.execute("SELECT trial_id, step, bpb, status FROM evaluations ORDER BY trial_id, step").fetchall()
        tr = con.execute("SELECT trial_id, config_id, seed, status FROM trials ORDER BY trial_id").fetchall()
        view = con.execute("SELECT * FROM v_igla_leaderboard ORDER BY bpb, config_id, seed").fetchall()
    finally:
        con.close()
    return ev, tr, view


def test_parse_budget():
    assert [parse_budget(s) for s in ("90s", "15m", "2h", "1.5h")] == [90, 900, 7200, 5400]
    for bad in ("", "10", "10x", "-5m", "0s", "h"):
        with pytest.raises(RaceSetupError, match="--budget"):
            parse_budget(bad)


def test_resume_after_crash_reaches_same_ledger_and_leaderboard(tmp_path):
    ref = run_race(seed=42, preset="quick", out=tmp_path / "ref", trainer=FakeTrainer())
    assert ref.summary.stopped_by == "complete" and ref.summary.reproduced is True
    ref_rows = read_ledger(tmp_path / "ref" / "ledger.jsonl").rows
    assert {r["status"] for r in ref_rows} >= {"trained", "promoted", "pruned", "confirmed", "reproduced"}
    assert all(r["score"] is not None and r["decided_by"] for r in ref_rows if r["status"] == "pruned")
    out = tmp_path / "crashed"
    with pytest.raises(Crash):
        run_race(seed=42, preset="quick", out=out, trainer=FakeTrainer(crash_at=20))
    with open(out / "ledger.jsonl", "ab") as f:  # a crash mid-write leaves a truncated last line
        f.write(b'{"ts": "2026-01-01T00:00:00+00:00", "sha": "unkn')
    with pytest.warns(UserWarning, match="truncated last line"):
        n_before = len(read_ledger(out / "ledger.jsonl").rows)
    assert 0 < n_before < len(ref_rows)
    with pytest.warns(UserWarning, match="truncated"):
        res = run_race(seed=42, preset="quick", out=out, resume=True, trainer=FakeTrainer())
    rows = read_ledger(out / "ledger.jsonl").rows
    assert key_rows(rows) == key_rows(ref_rows)
    assert len({(r["event_id"], r["status"]) for r in rows}) == len(rows)  # nothing written twice
    assert res.replayed >= 15 and res.executed == len([r for r in rows if r["status"] in
                                                       ("trained", "confirmed", "reproduced")]) - res.replayed
    assert board(out / "race.db") == board(tmp_path / "ref" / "race.db")
    # resuming a finished race replays everything and writes nothing
    again = run_race(seed=42, preset="quick", out=out, resume=True, trainer=FakeTrainer(crash_at=1))
    assert again.executed == 0 and len(read_ledger(out / "ledger.jsonl").rows) == len(rows)


def test_deadline_stop_then_resume(tmp_path):
    ref = run_race(seed=7, preset="smoke", out=tmp_path / "ref", trainer=FakeTrainer())
    out = tmp_path / "b"
    part = run_race(seed=7, preset="smoke", out=out, deadline_s=0.25, trainer=FakeTrainer(sleep_s=0.03))
    assert part.summary.stopped_by == "deadline"
    n = len(read_ledger(out / "ledger.jsonl").rows)
    assert n < len(read_ledger(tmp_path / "ref" / "ledger.jsonl").rows)
    done = run_race(seed=7, preset="smoke", out=out, resume=True, trainer=FakeTrainer())
    assert done.summary.stopped_by == "complete"
    assert key_rows(read_ledger(out / "ledger.jsonl").rows) == key_rows(read_ledger(tmp_path / "ref" / "ledger.jsonl").rows)


def test_same_shape_actions_run_as_one_population(tmp_path):
    seq = run_race(seed=42, preset="smoke", out=tmp_path / "seq", trainer=FakeTrainer())
    pt = PopulationTrainer()
    pop = run_race(seed=42, preset="smoke", out=tmp_path / "pop", trainer=pt, executor="population")
    assert pt.populations == [4]  # the champion's three confirmations and its reproduction
    assert key_rows(pop.rows) == key_rows(seq.rows)
    one = PopulationTrainer()  # the local executor trains one action at a time, whatever the trainer offers
    run_race(seed=42, preset="smoke", out=tmp_path / "local", trainer=one)
    assert one.populations == []


def test_full_style_run_appends_confirmation_rows_to_canonical_once(tmp_path, monkeypatch):
    import igla_jax.evidence.ledger
    import igla_jax.execution.race_runner
    fake_canon = tmp_path / "assertions" / "seed_results.jsonl"
    monkeypatch.setattr(igla_jax.evidence.ledger, "CANONICAL_LEDGER", fake_canon)
    monkeypatch.setattr(igla_jax.execution.race_runner, "CANONICAL_LEDGER", fake_canon)
    out = tmp_path / "c"
    with pytest.raises(Crash):  # dies during the confirmations
        run_race(seed=42, preset="smoke", out=out, canonical=True, trainer=FakeTrainer(crash_seed=44))
    first = read_ledger(fake_canon).rows
    assert [(r["status"], r["seed"]) for r in first] == [("confirmed", 42), ("confirmed", 43)]
    run_race(seed=42, preset="smoke", out=out, resume=True, canonical=True, trainer=FakeTrainer())
    rows = read_ledger(fake_canon).rows
    search = rows[-1]["seed"]
    assert search not in (42, 43, 44)
    assert sorted((r["status"], r["seed"]) for r in rows) == [("confirmed", 42), ("confirmed", 43), ("confirmed", 44),
                                                             ("reproduced", search)]
    assert all(isinstance(r.get("test_bpb"), float) for r in rows if r["status"] == "confirmed")
    assert all("test_bpb" not in r for r in rows if r["status"] != "confirmed")
    own = [r for r in read_ledger(out / "ledger.jsonl").rows if r["status"] in ("confirmed", "reproduced")]
    assert key_rows(rows) == key_rows(own)
    # a preset without canonical=True never writes there
    run_race(seed=43, preset="smoke", out=tmp_path / "d", trainer=FakeTrainer())
    assert len(read_ledger(fake_canon).rows) == 4


def test_falsify_lost_canonical_row_kill_between_appends_is_reconciled_once(tmp_path, monkeypatch):
    """A kill after the run-ledger append and before the canonical append used to lose that row for good."""
    import igla_jax.evidence.ledger
    import igla_jax.execution.race_runner
    from igla_jax.evidence.ledger import Ledger
    fake_canon = tmp_path / "assertions" / "seed_results.jsonl"
    monkeypatch.setattr(igla_jax.evidence.ledger, "CANONICAL_LEDGER", fake_canon)
    monkeypatch.setattr(igla_jax.execution.race_runner, "CANONICAL_LEDGER", fake_canon)
    real_append = Ledger.append

    def dying_append(self, row):
        if self.path == fake_canon and row["seed"] == 43:
            raise Crash()  # exactly between the two appends: the run ledger already holds the row
        return real_append(self, row)

    out = tmp_path / "k"
    monkeypatch.setattr(Ledger, "append", dying_append)
    with pytest.raises(Crash):
        run_race(seed=42, preset="smoke", out=out, canonical=True, trainer=FakeTrainer())
    run_rows = read_ledger(out / "ledger.jsonl").rows
    assert [r["seed"] for r in run_rows if r["status"] == "confirmed"] == [42, 43]
    assert [r["seed"] for r in read_ledger(fake_canon).rows] == [42]
    monkeypatch.setattr(Ledger, "append", real_append)
    run_race(seed=42, preset="smoke", out=out, resume=True, canonical=True, trainer=FakeTrainer())
    canon = read_ledger(fake_canon).rows
    assert sorted(r["seed"] for r in canon if r["status"] == "confirmed") == [42, 43, 44]
    assert len({(r["event_id"], r["status"]) for r in canon}) == len(canon) == 4
    # resuming again appends nothing
    run_race(seed=42, preset="smoke", out=out, resume=True, canonical=True, trainer=FakeTrainer())
    assert len(read_ledger(fake_canon).rows) == 4


def test_only_confirm_runs_read_the_test_split(tmp_path):
    ft = FakeTrainer()
    res = run_race(seed=42, preset="smoke", out=tmp_path / "t", trainer=ft)
    search = res.state.config.search_seed
    assert sorted(seed for seed, test in ft.eval_tests if test) == [42, 43, 44]
    assert all(seed == search for seed, test in ft.eval_tests if not test)


@pytest.mark.parametrize("field, value, needle", [
    ("step", 999, "step 999"), ("seed", 5, "seed 5"), ("rung", 7, "rung 7"), ("action", "confirm", "kind 'confirm'"),
])
def test_falsify_replay_mismatch_resume_refuses_a_row_that_does_not_answer_its_action(tmp_path, field, value, needle):
    out = tmp_path / "r"
    run_race(seed=42, preset="smoke", out=out, trainer=FakeTrainer())
    path = out / "ledger.jsonl"
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    i = next(k for k, r in enumerate(rows) if r["status"] == "trained")
    if field in ("rung", "action"):
        rows[i]["extra"][field] = value
    else:
        rows[i][field] = value
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    from igla_jax.evidence.leaderboard import LeaderboardError
    from igla_jax.execution.executor import ResumeError
    # a changed seed is caught already while the leaderboard is rebuilt from the ledger
    with pytest.raises((ResumeError, LeaderboardError), match=needle if field != "seed" else "165008596|seed 5"):
        run_race(seed=42, preset="smoke", out=out, resume=True, trainer=FakeTrainer())


def test_out_dir_rules(tmp_path):
    run_race(seed=1, preset="smoke", out=tmp_path / "a", trainer=FakeTrainer())
    with pytest.raises(RaceSetupError, match="already holds a race"):
        run_race(seed=1, preset="smoke", out=tmp_path / "a", trainer=FakeTrainer())
    with pytest.raises(RaceSetupError, match="--seed 1 --preset smoke, not --seed 2"):
        run_race(seed=2, preset="smoke", out=tmp_path / "a", resume=True, trainer=FakeTrainer())
    from accelerators.phi_grid import PhiSampler
    from igla_jax.evidence.prereg import load_prereg
    with pytest.raises(RaceSetupError, match="roles: recorded .*'random'.*now .*'phi_grid'"):
        run_race(seed=1, preset="smoke", out=tmp_path / "a", resume=True, trainer=FakeTrainer(),
                 sampler=PhiSampler(load_prereg()))
    # the CLI's accelerator flags and verdict sources are part of the specification too
    run_race(seed=1, preset="smoke", out=tmp_path / "f", trainer=FakeTrainer(),
             spec_extra={"flags": {"sampler": "phi", "mup": "study"}})
    with pytest.raises(RaceSetupError, match="flags: recorded"):
        run_race(seed=1, preset="smoke", out=tmp_path / "f", resume=True, trainer=FakeTrainer(),
                 spec_extra={"flags": {"sampler": "random", "mup": "study"}})
    run_race(seed=1, preset="smoke", out=tmp_path / "f", resume=True, trainer=FakeTrainer(),
             spec_extra={"flags": {"sampler": "phi", "mup": "study"}})
    # a race killed before it wrote anything (no race.json, no ledger rows): --resume starts it
    fresh = run_race(seed=1, preset="smoke", out=tmp_path / "empty", resume=True, trainer=FakeTrainer())
    assert fresh.summary.stopped_by == "complete" and (tmp_path / "empty" / "race.json").is_file()
    assert fresh.executed == len(fresh.rows) - sum(r["status"] in ("pruned", "promoted") for r in fresh.rows)
    (tmp_path / "orphan").mkdir()
    (tmp_path / "orphan" / "ledger.jsonl").write_text('{"run_id": "x"}\n')   # rows without their race.json
    with pytest.raises(RaceSetupError, match="no race to resume"):
        run_race(seed=1, preset="smoke", out=tmp_path / "orphan", resume=True, trainer=FakeTrainer())
    (tmp_path / "file").write_text("x")
    with pytest.raises(RaceSetupError, match="not a writable directory"):
        run_race(seed=1, preset="smoke", out=tmp_path / "file" / "sub", trainer=FakeTrainer())


# ---------------------------------------------------------------- the real CLI, real trainer, smoke preset
def cli(args, env_extra=None, **kw):
    env = {**os.environ, "PYTHONPATH": str(REPO), **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "experiments.race", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300, **kw)


@pytest.mark.parametrize("args, needle", [
    (["--preset", "nope"], "invalid choice"),
    (["--seed", "abc"], "invalid int value"),
    (["--budget", "10x"], "--budget '10x'"),
    (["--frobnicate"], "unrecognized arguments"),
])
def test_cli_bad_flags_exit_2(args, needle, tmp_path):
    r = cli([*args, "--out", str(tmp_path / "o")])
    assert r.returncode == 2 and needle in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_cli_bad_out_and_bad_prereg_exit_2(tmp_path):
    (tmp_path / "file").write_text("x")
    r = cli(["--preset", "smoke", "--out", str(tmp_path / "file" / "sub")])
    assert r.returncode == 2 and "not a writable directory" in r.stderr and "Traceback" not in r.stderr
    bad = tmp_path / "prereg.json"
    bad.write_text('{"rungs": [1000, 3000]')
    r = cli(["--preset", "smoke", "--out", str(tmp_path / "o")], {"IGLA_PREREG": str(bad)})
    assert r.returncode == 2 and str(bad) in r.stderr and "Traceback" not in r.stderr


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return {"IGLA_JAX_CACHE": str(tmp_path_factory.mktemp("xla_cache"))}


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, cache):
    out = tmp_path_factory.mktemp("smoke") / "run"
    canon = CANONICAL_LEDGER.stat().st_mtime_ns if CANONICAL_LEDGER.exists() else None
    r = cli(["--seed", "42", "--preset", "smoke", "--out", str(out)], cache)
    assert (CANONICAL_LEDGER.stat().st_mtime_ns if CANONICAL_LEDGER.exists() else None) == canon
    return out, r


def test_cli_smoke_end_to_end(smoke_run):
    out, r = smoke_run
    assert r.returncode == 0, r.stderr[-2000:]
    rows = read_ledger(out / "ledger.jsonl").rows
    assert [x["status"] for x in rows].count("confirmed") == 3 and [x["status"] for x in rows].count("reproduced") == 1
    assert all(x["test_bpb"] > 0 for x in rows if x["status"] == "confirmed")
    assert all(x["preset"] == "smoke" and x["run_id"] == rows[0]["run_id"] for x in rows)
    for needle in ("race ranking top 5", "champion", "accelerator phi_grid", "victory: rejected",
                   "step_too_early", "reproduced: True"):
        assert needle in r.stdout, needle
    assert "trials" in r.stderr  # progress lines
    ckpts = list((out / "ckpt").rglob("step_4.msgpack"))
    assert ckpts, "rung-1 checkpoints are kept for promotion"


def test_cli_kill_9_then_resume_same_final_leaderboard(smoke_run, cache, tmp_path):
    ref_out, ref = smoke_run
    assert ref.returncode == 0
    ref_rows = read_ledger(ref_out / "ledger.jsonl").rows
    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(REPO), **cache}
    p = subprocess.Popen([sys.executable, "-m", "experiments.race", "--seed", "42", "--preset", "smoke",
                          "--out", str(out)], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ledger = out / "ledger.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and p.poll() is None:
        if ledger.exists() and ledger.read_bytes().count(b"\n") >= 3:
            break
        time.sleep(0.02)
    p.send_signal(signal.SIGKILL)
    p.wait()
    killed = read_ledger(ledger).rows
    assert 3 <= len(killed) < len(ref_rows), "the kill must land mid-race"
    n_results = sum(x["status"] in ("trained", "diverged", "confirmed", "reproduced") for x in killed)
    r = cli(["--seed", "42", "--preset", "smoke", "--out", str(out), "--resume"], cache)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f" {n_results} replayed from the ledger" in r.stdout, r.stdout
    assert key_rows(read_ledger(ledger).rows) == key_rows(ref_rows)
    assert board(out / "race.db") == board(ref_out / "race.db")
