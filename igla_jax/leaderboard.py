"""Per-run SQLite leaderboard: trials, their rung evaluations, and the view v_igla_leaderboard.

The view keeps only evaluations at step >= the pre-registered min_victory_step, with a finite
BPB, and returns the best (lowest) BPB per (config_id, seed). Each evaluation is an honest
measurement at a rung step, so "best" picks the best rung measurement, never a minimum over a
training curve. A SQL view cannot take parameters, so the step threshold is written into the
view as an integer literal when the database is created, and stored in table igla_meta; opening
a database built under a different threshold is an error.

    sqlite3 race.db 'SELECT * FROM v_igla_leaderboard ORDER BY bpb ASC LIMIT 10'
"""
from __future__ import annotations

import json
import math
import os
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from igla_jax.prereg import Prereg, load_prereg

VIEW = "v_igla_leaderboard"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS igla_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS trials (
    trial_id    TEXT PRIMARY KEY,
    run_id      TEXT NOT NULL,
    config_id   TEXT NOT NULL,
    family      TEXT NOT NULL,
    seed        INTEGER NOT NULL,
    config_json TEXT NOT NULL,
    status      TEXT NOT NULL,
    created_ts  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS evaluations (
    trial_id TEXT NOT NULL REFERENCES trials(trial_id),
    step     INTEGER NOT NULL,
    bpb      REAL,
    status   TEXT NOT NULL,
    ts       TEXT NOT NULL,
    PRIMARY KEY (trial_id, step)
);
"""
# {min_step} is an int literal (validated by the pre-registration), never user text.
_VIEW_SQL = """
CREATE VIEW IF NOT EXISTS v_igla_leaderboard AS
SELECT config_id, family, seed, step, bpb FROM (
    SELECT t.config_id AS config_id, t.family AS family, t.seed AS seed, e.step AS step, e.bpb AS bpb,
           ROW_NUMBER() OVER (PARTITION BY t.config_id, t.seed
                              ORDER BY e.bpb ASC, e.step ASC, t.trial_id ASC) AS rn
    FROM evaluations AS e JOIN trials AS t ON t.trial_id = e.trial_id
    WHERE e.step >= {min_step} AND e.bpb IS NOT NULL AND e.bpb > -9e999 AND e.bpb < 9e999
) WHERE rn = 1
"""


class LeaderboardError(RuntimeError):
    """The leaderboard database is missing, not a leaderboard, or given inconsistent records."""


@dataclass(frozen=True)
class LeaderRow:
    """One row of v_igla_leaderboard."""
    config_id: str
    family: str
    seed: int
    step: int
    bpb: float


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


class Leaderboard:
    """A run's leaderboard database; creates tables and the view on first open."""

    def __init__(self, db_path: str | os.PathLike[str], *, prereg: Prereg | None = None):
        self.path = Path(db_path)
        pr = prereg if prereg is not None else load_prereg()
        self.min_victory_step = int(pr.min_victory_step)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(self.path)
            self.conn.execute("PRAGMA foreign_keys = ON")
            with self.conn:
                self.conn.executescript(_SCHEMA)
                got = self.conn.execute("SELECT value FROM igla_meta WHERE key = 'min_victory_step'").fetchone()
                if got is None:
                    self.conn.execute("INSERT INTO igla_meta (key, value) VALUES ('min_victory_step', ?)",
                                      (str(self.min_victory_step),))
                elif int(got[0]) != self.min_victory_step:
                    raise LeaderboardError(
                        f"{self.path}: built with min_victory_step {got[0]}, but the pre-registration "
                        f"({pr.source or 'given'}) says {self.min_victory_step}; use a fresh --out")
                self.conn.execute(_VIEW_SQL.format(min_step=self.min_victory_step))
        except sqlite3.Error as e:
            self._close_quietly()
            raise LeaderboardError(f"{self.path}: cannot open the leaderboard database: {e}") from None
        except LeaderboardError:
            self._close_quietly()
            raise

    def _close_quietly(self) -> None:
        conn = getattr(self, "conn", None)
        if conn is not None:
            conn.close()

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "Leaderboard":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def record_trial(self, trial_id: str, *, run_id: str, config_id: str, family: str, seed: int,
                     config: Mapping[str, Any], status: str, created_ts: str | None = None) -> None:
        """Inserts a trial, or updates its status; re-recording the same trial is safe."""
        cfg = json.dumps(dict(config), sort_keys=True, allow_nan=False)
        with self.conn:
            old = self.conn.execute("SELECT run_id, config_id, family, seed, config_json FROM trials "
                                    "WHERE trial_id = ?", (trial_id,)).fetchone()
            if old is None:
                self.conn.execute(
                    "INSERT INTO trials (trial_id, run_id, config_id, family, seed, config_json, status, created_ts) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (trial_id, run_id, config_id, family, int(seed), cfg, status, created_ts or _now()))
                return
            new = (run_id, config_id, family, int(seed), cfg)
            if tuple(old) != new:
                raise LeaderboardError(f"{self.path}: trial {trial_id!r} is already recorded as {tuple(old)!r}; "
                                       f"refusing to change it to {new!r}")
            self.conn.execute("UPDATE trials SET status = ? WHERE trial_id = ?", (status, trial_id))

    def record_eval(self, trial_id: str, step: int, bpb: float | None, status: str,
                    ts: str | None = None) -> None:
        """Records the BPB measured at (trial, step); NaN/inf stored as NULL; idempotent per (trial, step)."""
        val = float(bpb) if bpb is not None and math.isfinite(bpb) else None
        try:
            with self.conn:
                self.conn.execute(
                    "INSERT INTO evaluations (trial_id, step, bpb, status, ts) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT (trial_id, step) DO UPDATE SET bpb = excluded.bpb, status = excluded.status, "
                    "ts = excluded.ts",
                    (trial_id, int(step), val, status, ts or _now()))
        except sqlite3.IntegrityError as e:
            raise LeaderboardError(f"{self.path}: evaluation of trial {trial_id!r} at step {step}: {e} "
                                   "(record_trial first)") from None

    def top(self, n: int = 10) -> list[LeaderRow]:
        """The n best rows of v_igla_leaderboard (lowest BPB first)."""
        return _top(self.conn, n)


def _top(conn: sqlite3.Connection, n: int) -> list[LeaderRow]:
    cur = conn.execute(f"SELECT config_id, family, seed, step, bpb FROM {VIEW} "
                       "ORDER BY bpb ASC, config_id ASC, seed ASC LIMIT ?", (int(n),))
    return [LeaderRow(*r) for r in cur.fetchall()]


def read_top(db_path: str | os.PathLike[str], n: int = 10) -> tuple[list[LeaderRow], int | None]:
    """Opens an existing database read-only; returns (top n rows, its min_victory_step if recorded)."""
    p = Path(db_path)
    if not p.is_file():
        raise LeaderboardError(f"{p}: no such leaderboard database")
    try:
        conn = sqlite3.connect(f"{p.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as e:
        raise LeaderboardError(f"{p}: cannot open: {e}") from None
    try:
        has_view = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'view' AND name = ?", (VIEW,)).fetchone()
        if not has_view:
            raise LeaderboardError(f"{p}: not a race leaderboard (no view {VIEW})")
        meta = conn.execute("SELECT value FROM igla_meta WHERE key = 'min_victory_step'").fetchone()
        return _top(conn, n), (int(meta[0]) if meta else None)
    except sqlite3.Error as e:
        raise LeaderboardError(f"{p}: not a readable leaderboard database: {e}") from None
    finally:
        conn.close()
