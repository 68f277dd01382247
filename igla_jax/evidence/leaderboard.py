"""Per-run SQLite leaderboard: trials, their rung evaluations, and the view v_igla_leaderboard.

The view shows one row per trial: the evaluation at the trial's highest recorded step, and only
when that step is >= the pre-registered min_victory_step and its BPB is finite. It never takes the
minimum over a trial's evaluations: a trial measured at 4000 (1.9) and at 8000 (2.0) shows 2.0 at
8000. The best of several noisy measurements is biased low (a best-of-steps selection, which the
project's rule forbids: BPB is measured at the step asked for, never a best-of-run minimum), and a
trial's last evaluation is where the race's decisions about it were made. A trial whose last
evaluation diverged (BPB NULL) shows nothing, never an earlier finite step.

A SQL view cannot take parameters, so the step threshold is written into the view as an integer
literal when the database is created, and stored in table igla_meta; opening a database built
under a different threshold is an error. igla_meta also records the view's schema_version: a
database made by an older version (schema 1: the best-of-steps view) has its view dropped and
recreated when it is opened for writing, and `read_top` (read-only) queries the current
selection directly instead of the stale view.

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

from igla_jax.evidence.prereg import Prereg, load_prereg

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
# Schema 1 (no schema_version row): the view took the minimum BPB per (config, seed) over every
# evaluation at step >= min_victory_step. Schema 2: the evaluation at each trial's highest step.
SCHEMA_VERSION = 2
# {min_step} is an int literal (validated by the pre-registration), never user text.
# Why the highest step and not the lowest BPB: see the module docstring (no best-of-steps selection).
_SELECT_SQL = """
SELECT config_id, family, seed, step, bpb, trial_id FROM (
    -- one row per trial: its last evaluation (highest step), whatever its BPB. Never min(bpb) over a
    -- trial's steps: the best of several noisy measurements is biased low (best-of-steps selection).
    SELECT t.config_id AS config_id, t.family AS family, t.seed AS seed, e.step AS step, e.bpb AS bpb,
           t.trial_id AS trial_id,
           ROW_NUMBER() OVER (PARTITION BY e.trial_id ORDER BY e.step DESC) AS rn
    FROM evaluations AS e JOIN trials AS t ON t.trial_id = e.trial_id
) WHERE rn = 1 AND step >= {min_step} AND bpb IS NOT NULL AND bpb > -9e999 AND bpb < 9e999
"""
_VIEW_SQL = "CREATE VIEW v_igla_leaderboard AS" + _SELECT_SQL


class LeaderboardError(RuntimeError):
    """The leaderboard database is missing, not a leaderboard, or given inconsistent records."""


@dataclass(frozen=True)
class LeaderRow:
    """One row of v_igla_leaderboard: a trial's evaluation at its highest step."""
    config_id: str
    family: str
    seed: int
    step: int
    bpb: float
    trial_id: str


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


class Leaderboard:
    """A run's leaderboard database; creates tables and the view on first open, rebuilds an older view."""

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
                self._ensure_view()
        except sqlite3.Error as e:
            self._close_quietly()
            raise LeaderboardError(f"{self.path}: cannot open the leaderboard database: {e}") from None
        except LeaderboardError:
            self._close_quietly()
            raise

    def _ensure_view(self) -> None:
        """Creates the view, or drops and recreates one made by an older schema (the view is derived data)."""
        version = _schema_version(self.conn)
        if version > SCHEMA_VERSION:
            raise LeaderboardError(f"{self.path}: leaderboard schema {version} is newer than this code's "
                                   f"{SCHEMA_VERSION}; use the code that made it or a fresh --out")
        has_view = self.conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'view' AND name = ?",
                                     (VIEW,)).fetchone()
        if version == SCHEMA_VERSION and has_view:
            return
        self.conn.execute(f"DROP VIEW IF EXISTS {VIEW}")
        self.conn.execute(_VIEW_SQL.format(min_step=self.min_victory_step))
        self.conn.execute("INSERT INTO igla_meta (key, value) VALUES ('schema_version', ?) "
                          "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (str(SCHEMA_VERSION),))

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
        return _top(self.conn, n, VIEW)


def _schema_version(conn: sqlite3.Connection) -> int:
    """igla_meta's schema_version; 1 for a database made before it was recorded."""
    got = conn.execute("SELECT value FROM igla_meta WHERE key = 'schema_version'").fetchone()
    return 1 if got is None else int(got[0])


def _top(conn: sqlite3.Connection, n: int, source: str) -> list[LeaderRow]:
    cur = conn.execute(f"SELECT config_id, family, seed, step, bpb, trial_id FROM {source} "
                       "ORDER BY bpb ASC, config_id ASC, seed ASC, trial_id ASC LIMIT ?", (int(n),))
    return [LeaderRow(*r) for r in cur.fetchall()]


def read_top(db_path: str | os.PathLike[str], n: int = 10) -> tuple[list[LeaderRow], int | None]:
    """Opens an existing database read-only; returns (top n rows, its min_victory_step if recorded).

    A database of an older schema keeps its old view until it is opened for writing; read here, the
    current selection is run directly on its tables (with its recorded min_victory_step).
    """
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
        min_step = int(meta[0]) if meta else None
        version = _schema_version(conn)
        if version == SCHEMA_VERSION:
            return _top(conn, n, VIEW), min_step
        if version > SCHEMA_VERSION or min_step is None:
            raise LeaderboardError(f"{p}: leaderboard schema {version} (min_victory_step "
                                   f"{'unrecorded' if min_step is None else min_step}): this code reads "
                                   f"schema {SCHEMA_VERSION}")
        return _top(conn, n, f"({_SELECT_SQL.format(min_step=min_step)})"), min_step
    except sqlite3.Error as e:
        raise LeaderboardError(f"{p}: not a readable leaderboard database: {e}") from None
    finally:
        conn.close()
