"""Append-only JSONL ledger: one validated row per event, flushed and fsynced per row.

Crash safety: a crash mid-write can leave a last line without its newline. The reader reports
and skips such a truncated tail, never merges it. A writer that opens a file ending that way
first closes the damaged line with a newline and appends a marker line
`{"ledger_marker": "isolated_truncated_line", "line": N, "ts": ...}`; the reader skips line N
only when that marker follows it, so any other malformed line is still an error.
"""
from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from igla_jax.evidence.ledger_row import (LedgerError, LedgerRow, _field_errors, in_event_order, normalize_row,
                                          row_key, utc_now)
from igla_jax.evidence.prereg import repo_root

log = logging.getLogger(__name__)

CANONICAL_LEDGER = repo_root() / "assertions" / "seed_results.jsonl"
MARKER_KEY = "ledger_marker"
ISOLATED = "isolated_truncated_line"


def _duplicate(key: tuple[str, int, str]) -> str:
    return f"repeats run {key[0]!r} event_id {key[1]} kind '{key[2]}'"


def _strict_json(text: str) -> Any:
    def reject(name: str) -> Any:
        raise ValueError(f"non-standard JSON constant {name}")
    return json.loads(text, parse_constant=reject)


@dataclass(frozen=True)
class LedgerRead:
    """Validated rows of a ledger, with any truncated tail and isolated damaged lines reported."""
    rows: list[dict[str, Any]]
    truncated_tail: str | None
    path: Path
    isolated_lines: tuple[int, ...] = ()
    line_numbers: tuple[int, ...] = ()   # the file line of each row in `rows` (1-based)


def _parse_line(text: str) -> tuple[Any, str | None]:
    try:
        return _strict_json(text), None
    except ValueError as e:
        return None, f"not valid JSON ({e})"


def _is_marker(obj: Any) -> bool:
    return isinstance(obj, dict) and MARKER_KEY in obj


def read_ledger(path: str | os.PathLike[str], *, missing_ok: bool = False) -> LedgerRead:
    """Reads and validates every line; raises LedgerError naming file and line of a bad one.

    A last line without its newline that is not valid JSON is a crash's truncated tail: it is
    reported (warning + `truncated_tail`) and skipped. Event ids must not decrease within a run
    (asynchronous result rows aside: `in_event_order`), and a run has at most one row per
    (event_id, kind), kind = promoted, pruned or result (`row_kind`): a repeated row (a replay
    written twice) would count one measurement twice.
    """
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        if missing_ok:
            return LedgerRead([], None, p)
        raise LedgerError(f"{p}: ledger file not found") from None
    chunks = raw.split(b"\n")
    tail = chunks.pop()  # b"" when the file ends with a newline
    truncated: str | None = None
    parsed: list[tuple[Any, str | None]] = []
    for chunk in chunks:
        try:
            parsed.append(_parse_line(chunk.decode("utf-8")))
        except UnicodeDecodeError as e:
            parsed.append((None, f"not UTF-8 ({e})"))
    if tail:
        text = tail.decode("utf-8", errors="replace")
        obj, err = _parse_line(text)
        if err is None:
            parsed.append((obj, None))  # complete JSON, only its newline is missing
        else:
            truncated = text
            msg = f"{p}: line {len(chunks) + 1} is a truncated last line (crash mid-write?), skipped: {text[:80]!r}"
            warnings.warn(msg, stacklevel=2)
            log.warning(msg)
    rows: list[dict[str, Any]] = []
    line_numbers: list[int] = []
    isolated: list[int] = []
    last_event: dict[str, int] = {}
    first_line: dict[tuple[str, int, str], int] = {}
    for i, (obj, err) in enumerate(parsed):
        lineno = i + 1
        nxt = parsed[i + 1][0] if i + 1 < len(parsed) else None
        if err is not None:
            if _is_marker(nxt) and nxt.get(MARKER_KEY) == ISOLATED and nxt.get("line") == lineno:
                isolated.append(lineno)
                continue
            raise LedgerError(f"{p}: line {lineno}: {err}")
        if _is_marker(obj):
            if obj.get(MARKER_KEY) != ISOLATED or obj.get("line") != lineno - 1 or lineno - 1 not in isolated:
                raise LedgerError(f"{p}: line {lineno}: marker {obj!r} does not follow the damaged line it names")
            continue
        if not isinstance(obj, dict):
            raise LedgerError(f"{p}: line {lineno}: a row must be a JSON object, got {type(obj).__name__}")
        bad = _field_errors(obj)
        if bad:
            raise LedgerError(f"{p}: line {lineno}: field '{bad[0]}' {bad[1]}")
        eid = obj.get("event_id")
        if eid is not None:
            if in_event_order(obj):
                if eid < last_event.get(obj["run_id"], -1):
                    raise LedgerError(f"{p}: line {lineno}: field 'event_id' {eid} is below the run's previous "
                                      f"event id {last_event[obj['run_id']]} (run {obj['run_id']!r})")
                last_event[obj["run_id"]] = eid
            key = row_key(obj)
            if key in first_line:
                raise LedgerError(f"{p}: line {lineno}: {_duplicate(key)} of line {first_line[key]}")
            first_line[key] = lineno
        rows.append(obj)
        line_numbers.append(lineno)
    return LedgerRead(rows, truncated, p, tuple(isolated), tuple(line_numbers))


def _is_canonical(p: Path) -> bool:
    try:
        return p.resolve() == CANONICAL_LEDGER.resolve()
    except OSError:
        return False


class Ledger:
    """Append-only writer: validates each row, writes one JSON line, flushes and fsyncs it.

    Refuses the canonical ledger (assertions/seed_results.jsonl) unless canonical_ok=True.
    Event ids must not decrease within a run (asynchronous result rows aside: `in_event_order`), and a
    (run_id, event_id, kind) already in the file is never written again (both checked against the
    rows already in the file, as `read_ledger` does).
    """

    def __init__(self, path: str | os.PathLike[str], *, canonical_ok: bool = False):
        self.path = Path(path)
        if _is_canonical(self.path) and not canonical_ok:
            raise LedgerError(f"{self.path}: refusing to write the canonical ledger without canonical_ok=True")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise LedgerError(f"{self.path}: cannot create the ledger's directory: {e}") from None
        existed = self.path.exists()
        read = read_ledger(self.path, missing_ok=True)
        self.truncated_tail = read.truncated_tail
        self._last_event: dict[str, int] = {}
        self._key_line: dict[tuple[str, int, str], int] = {}
        for r, lineno in zip(read.rows, read.line_numbers):
            key = row_key(r)
            if key is not None:
                if in_event_order(r):
                    self._last_event[r["run_id"]] = r["event_id"]
                self._key_line[key] = lineno
        self._repair_tail()
        if not existed:
            self._write(b"")
            _fsync_dir(self.path.parent)
        self._n_lines = self.path.read_bytes().count(b"\n")  # every line is terminated after the repair

    def _repair_tail(self) -> None:
        """Ends an unterminated last line; a damaged one gets an isolation marker after it."""
        size = self.path.stat().st_size if self.path.exists() else 0
        if size == 0:
            return
        with open(self.path, "rb") as f:
            f.seek(size - 1)
            if f.read(1) == b"\n":
                return
        fix = b"\n"
        if self.truncated_tail is not None:
            n_lines = self.path.read_bytes().count(b"\n") + 1
            marker = {MARKER_KEY: ISOLATED, "line": n_lines, "ts": utc_now()}
            fix += json.dumps(marker).encode() + b"\n"
            msg = f"{self.path}: isolated truncated line {n_lines} with a marker; new rows start on a fresh line"
            warnings.warn(msg, stacklevel=3)
            log.warning(msg)
        self._write(fix)

    def _write(self, data: bytes) -> None:
        with open(self.path, "ab") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    def last_event_id(self, run_id: str) -> int | None:
        """Largest event id recorded for run_id (None if none)."""
        return self._last_event.get(run_id)

    def append(self, row: LedgerRow | Mapping[str, Any]) -> dict[str, Any]:
        """Validates and durably appends one row; returns the dict written."""
        try:
            d = normalize_row(row)
        except LedgerError as e:
            raise LedgerError(f"{self.path}: new row: {e}") from None
        eid, key = d.get("event_id"), row_key(d)
        ordered = key is not None and in_event_order(d)
        if key is not None:
            prev = self._last_event.get(d["run_id"])
            if ordered and prev is not None and eid < prev:
                raise LedgerError(f"{self.path}: new row: field 'event_id' {eid} is below the run's previous "
                                  f"event id {prev} (run {d['run_id']!r})")
            if key in self._key_line:
                raise LedgerError(f"{self.path}: new row (line {self._n_lines + 1}): {_duplicate(key)} of line "
                                  f"{self._key_line[key]}")
        self._write(json.dumps(d, allow_nan=False, separators=(",", ":")).encode("utf-8") + b"\n")
        self._n_lines += 1
        if key is not None:
            if ordered:
                self._last_event[d["run_id"]] = eid
            self._key_line[key] = self._n_lines
        return d


def _fsync_dir(d: Path) -> None:
    """Makes a new file's directory entry durable (best effort: not every OS allows it)."""
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
