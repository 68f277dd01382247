"""SQLite leaderboard: the view's step filter and best-per-(config, seed), idempotence, the CLI."""
from __future__ import annotations

import dataclasses
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from experiments import leaderboard as cli
from igla_jax.leaderboard import Leaderboard, LeaderboardError, LeaderRow, read_top
from igla_jax.prereg import load_prereg

PR = load_prereg()
MIN = PR.min_victory_step
REPO = Path(__file__).resolve().parent.parent


def _trial(lb: Leaderboard, tid: str, cfg: str, seed: int, family: str = "attn") -> None:
    lb.record_trial(tid, run_id="run", config_id=cfg, family=family, seed=seed, config={"width": 16, "id": cfg},
                    status="running")


@pytest.fixture
def lb(tmp_path):
    with Leaderboard(tmp_path / "race.db", prereg=PR) as board:
        yield board


def test_falsify_view_filters_early_steps(lb):
    _trial(lb, "t1", "early", 42)
    lb.record_eval("t1", MIN - 1, 0.9, "trained")  # excellent but too early: never shown
    assert lb.top() == []
    _trial(lb, "t2", "late", 42)
    lb.record_eval("t2", MIN, 2.0, "trained")  # the boundary step is shown
    assert lb.top() == [LeaderRow("late", "attn", 42, MIN, 2.0)]


def test_best_per_config_and_seed_and_ordering(lb):
    _trial(lb, "a42", "A", 42)
    _trial(lb, "a43", "A", 43)
    _trial(lb, "b42", "B", 42, family="jepa")
    for step, bpb in ((MIN, 2.1), (3 * MIN, 1.9), (9 * MIN, 2.0)):
        lb.record_eval("a42", step, bpb, "trained")
    lb.record_eval("a43", 3 * MIN, 1.95, "trained")
    lb.record_eval("b42", 3 * MIN, 1.8, "trained")
    assert lb.top() == [LeaderRow("B", "jepa", 42, 3 * MIN, 1.8), LeaderRow("A", "attn", 42, 3 * MIN, 1.9),
                        LeaderRow("A", "attn", 43, 3 * MIN, 1.95)]
    assert lb.top(1) == [LeaderRow("B", "jepa", 42, 3 * MIN, 1.8)]


def test_nonfinite_bpb_never_shown(lb):
    _trial(lb, "t", "C", 42)
    lb.record_eval("t", MIN, float("nan"), "diverged")
    lb.record_eval("t", 2 * MIN, float("-inf"), "diverged")
    lb.conn.execute("INSERT INTO evaluations VALUES ('t', ?, ?, 'raw', 'x')", (3 * MIN, float("-inf")))
    assert lb.top() == []


def test_idempotent_re_record(tmp_path):
    path = tmp_path / "race.db"
    with Leaderboard(path, prereg=PR) as lb:
        _trial(lb, "t", "A", 42)
        lb.record_eval("t", MIN, 2.0, "trained", ts="2025-01-01T00:00:00+00:00")
        first = lb.top()
    with Leaderboard(path, prereg=PR) as lb:  # a resumed race re-records the same events
        _trial(lb, "t", "A", 42)
        lb.record_trial("t", run_id="run", config_id="A", family="attn", seed=42,
                        config={"width": 16, "id": "A"}, status="promoted")
        lb.record_eval("t", MIN, 2.0, "trained", ts="2025-01-02T00:00:00+00:00")
        assert lb.top() == first
        n_eval = lb.conn.execute("SELECT COUNT(*) FROM evaluations").fetchone()[0]
        n_trial, status = lb.conn.execute("SELECT COUNT(*), MAX(status) FROM trials").fetchone()
    assert (n_eval, n_trial, status) == (1, 1, "promoted")


def test_falsify_conflicting_trial_and_orphan_eval(lb):
    _trial(lb, "t", "A", 42)
    with pytest.raises(LeaderboardError, match="already recorded"):
        _trial(lb, "t", "B", 42)
    with pytest.raises(LeaderboardError, match="record_trial first"):
        lb.record_eval("ghost", MIN, 2.0, "trained")


def test_view_threshold_is_the_prereg_literal_and_guarded(tmp_path):
    other = dataclasses.replace(PR, min_victory_step=10)
    path = tmp_path / "race.db"
    with Leaderboard(path, prereg=other) as lb:
        _trial(lb, "t", "A", 42)
        lb.record_eval("t", 10, 2.0, "trained")
        assert len(lb.top()) == 1
    sql = sqlite3.connect(path).execute("SELECT sql FROM sqlite_master WHERE name = 'v_igla_leaderboard'").fetchone()[0]
    assert "e.step >= 10 " in sql
    with pytest.raises(LeaderboardError, match="min_victory_step"):
        Leaderboard(path, prereg=PR)


def test_sqlite_shell_query_works(tmp_path):
    path = tmp_path / "race.db"
    with Leaderboard(path, prereg=PR) as lb:
        _trial(lb, "t", "A", 42)
        lb.record_eval("t", MIN, 2.0, "trained")
    con = sqlite3.connect(path)
    assert con.execute("SELECT * FROM v_igla_leaderboard ORDER BY bpb ASC LIMIT 10").fetchall() == [
        ("A", "attn", 42, MIN, 2.0)]
    assert [d[0] for d in con.execute("SELECT * FROM v_igla_leaderboard").description] == [
        "config_id", "family", "seed", "step", "bpb"]


def test_cli_prints_table(tmp_path, capsys):
    path = tmp_path / "race.db"
    with Leaderboard(path, prereg=PR) as lb:
        for i in range(12):
            _trial(lb, f"t{i}", f"cfg{i:02d}", 42)
            lb.record_eval(f"t{i}", MIN, 1.5 + i / 100, "trained")
    assert cli.main(["--db", str(path), "--limit", "3"]) == 0
    out = capsys.readouterr().out
    assert "cfg00" in out and "cfg02" in out and "cfg03" not in out and "1.5000" in out
    assert cli.main(["--db", str(path)]) == 0
    out = capsys.readouterr().out
    assert "cfg09" in out and "cfg10" not in out  # default limit 10
    assert read_top(path, 100)[1] == MIN


def test_cli_errors_exit_2(tmp_path, capsys):
    assert cli.main(["--db", str(tmp_path / "missing.db")]) == 2
    assert "missing.db" in capsys.readouterr().err
    not_lb = tmp_path / "other.db"
    sqlite3.connect(not_lb).execute("CREATE TABLE x (a)").connection.commit()
    assert cli.main(["--db", str(not_lb)]) == 2
    assert "not a race leaderboard" in capsys.readouterr().err
    for argv in (["--limit", "3"], ["--db", "x", "--limit", "0"], ["--db", "x", "--bogus"]):
        with pytest.raises(SystemExit) as e:
            cli.main(argv)
        assert e.value.code == 2


def test_cli_subprocess_missing_db(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, "-m", "experiments.leaderboard", "--db", str(tmp_path / "none.db")],
                       capture_output=True, text=True, cwd=REPO, env=env)
    assert r.returncode == 2 and "no such leaderboard database" in r.stderr and "Traceback" not in r.stderr
