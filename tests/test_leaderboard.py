"""SQLite leaderboard: the view's step filter and last-evaluation-per-trial, schema upgrade, idempotence, the CLI."""
from __future__ import annotations

import dataclasses
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from experiments import leaderboard as cli
from igla_jax.evidence.leaderboard import Leaderboard, LeaderboardError, LeaderRow, read_top
from igla_jax.evidence.prereg import load_prereg

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
    assert lb.top() == [LeaderRow("late", "attn", 42, MIN, 2.0, "t2")]


def test_falsify_view_shows_the_last_evaluation_not_the_best(lb):
    """A trial evaluated at 4000 (1.9) and 8000 (2.0) shows 2.0 at 8000: no best-of-steps minimum."""
    _trial(lb, "t", "A", 42)
    lb.record_eval("t", 4000, 1.9, "trained")
    assert lb.top() == [LeaderRow("A", "attn", 42, 4000, 1.9, "t")]   # its only evaluation so far
    lb.record_eval("t", 8000, 2.0, "trained")
    assert lb.top() == [LeaderRow("A", "attn", 42, 8000, 2.0, "t")]
    lb.record_eval("t", 16000, None, "diverged")   # the last evaluation diverged: no earlier step stands in
    assert lb.top() == []


def test_one_row_per_trial_and_ordering(lb):
    _trial(lb, "a42", "A", 42)
    _trial(lb, "a43", "A", 43)
    _trial(lb, "b42", "B", 42, family="jepa")
    _trial(lb, "b42-again", "B", 42, family="jepa")   # e.g. the reproduce run: same config and seed
    for step, bpb in ((MIN, 2.1), (3 * MIN, 1.9), (9 * MIN, 2.0)):
        lb.record_eval("a42", step, bpb, "trained")
    lb.record_eval("a43", 3 * MIN, 1.95, "trained")
    lb.record_eval("b42", 3 * MIN, 1.8, "trained")
    lb.record_eval("b42-again", 3 * MIN, 1.85, "reproduced")
    assert lb.top() == [LeaderRow("B", "jepa", 42, 3 * MIN, 1.8, "b42"),
                        LeaderRow("B", "jepa", 42, 3 * MIN, 1.85, "b42-again"),
                        LeaderRow("A", "attn", 43, 3 * MIN, 1.95, "a43"),
                        LeaderRow("A", "attn", 42, 9 * MIN, 2.0, "a42")]
    assert lb.top(1) == [LeaderRow("B", "jepa", 42, 3 * MIN, 1.8, "b42")]


# the view as schema 1 created it (best BPB per (config, seed) over every step >= the threshold)
_OLD_VIEW = """
CREATE VIEW IF NOT EXISTS v_igla_leaderboard AS
SELECT config_id, family, seed, step, bpb FROM (
    SELECT t.config_id AS config_id, t.family AS family, t.seed AS seed, e.step AS step, e.bpb AS bpb,
           ROW_NUMBER() OVER (PARTITION BY t.config_id, t.seed
                              ORDER BY e.bpb ASC, e.step ASC, t.trial_id ASC) AS rn
    FROM evaluations AS e JOIN trials AS t ON t.trial_id = e.trial_id
    WHERE e.step >= {min_step} AND e.bpb IS NOT NULL AND e.bpb > -9e999 AND e.bpb < 9e999
) WHERE rn = 1
"""


def _old_db(path: Path) -> None:
    """A schema-1 database: the old view, no schema_version in igla_meta, one trial at 4000 and 8000."""
    with Leaderboard(path, prereg=PR) as lb:
        _trial(lb, "t", "A", 42)
        lb.record_eval("t", 4000, 1.9, "trained")
        lb.record_eval("t", 8000, 2.0, "trained")
    con = sqlite3.connect(path)
    with con:
        con.execute("DROP VIEW v_igla_leaderboard")
        con.execute(_OLD_VIEW.format(min_step=MIN))
        con.execute("DELETE FROM igla_meta WHERE key = 'schema_version'")
    assert con.execute("SELECT step, bpb FROM v_igla_leaderboard").fetchall() == [(4000, 1.9)]
    con.close()


def test_falsify_old_database_view_is_replaced(tmp_path):
    """A database made with the best-of-steps view gets the current view when opened again."""
    assert MIN <= 4000, "the fixture's steps must pass the pre-registered min_victory_step"
    path = tmp_path / "race.db"
    _old_db(path)
    assert read_top(path)[0] == [LeaderRow("A", "attn", 42, 8000, 2.0, "t")]   # read-only: never the stale view
    con = sqlite3.connect(path)
    assert con.execute("SELECT step, bpb FROM v_igla_leaderboard").fetchall() == [(4000, 1.9)]  # untouched
    con.close()
    with Leaderboard(path, prereg=PR) as lb:   # opening for writing rebuilds the view
        assert lb.top() == [LeaderRow("A", "attn", 42, 8000, 2.0, "t")]
    con = sqlite3.connect(path)
    assert con.execute("SELECT step, bpb FROM v_igla_leaderboard").fetchall() == [(8000, 2.0)]
    assert con.execute("SELECT value FROM igla_meta WHERE key = 'schema_version'").fetchone() == ("2",)
    con.close()


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "race.db"
    Leaderboard(path, prereg=PR).close()
    con = sqlite3.connect(path)
    with con:
        con.execute("UPDATE igla_meta SET value = '99' WHERE key = 'schema_version'")
    con.close()
    with pytest.raises(LeaderboardError, match="schema 99"):
        Leaderboard(path, prereg=PR)
    with pytest.raises(LeaderboardError, match="schema 99"):
        read_top(path)


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
    assert "step >= 10 " in sql
    with pytest.raises(LeaderboardError, match="min_victory_step"):
        Leaderboard(path, prereg=PR)


def test_sqlite_shell_query_works(tmp_path):
    path = tmp_path / "race.db"
    with Leaderboard(path, prereg=PR) as lb:
        _trial(lb, "t", "A", 42)
        lb.record_eval("t", MIN, 2.0, "trained")
    con = sqlite3.connect(path)
    assert con.execute("SELECT * FROM v_igla_leaderboard ORDER BY bpb ASC LIMIT 10").fetchall() == [
        ("A", "attn", 42, MIN, 2.0, "t")]
    assert [d[0] for d in con.execute("SELECT * FROM v_igla_leaderboard").description] == [
        "config_id", "family", "seed", "step", "bpb", "trial_id"]


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
