"""A ledger row: the status vocabulary, the code version that stamps it, and its validation.

`LedgerRow` is what a run writes; `normalize_row` validates one (as a dict, a NaN bpb made null)
before anything is appended. The file itself (append-only JSONL, crash-safe) is `igla_jax.evidence.ledger`.
"""
from __future__ import annotations

import json
import math
import os
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from igla_jax.evidence.prereg import repo_root

# The one status vocabulary; every other module imports these names (never a hand-kept copy).
STATUSES = frozenset({"trained", "promoted", "pruned", "diverged", "confirmed", "reproduced"})
# Rows that carry a BPB measured by that row's own run (finite, > 0).
BPB_REQUIRED = frozenset({"trained", "confirmed", "reproduced"})
# Rows that answer a compute action (Train, Confirm, Reproduce): the executor's result rows.
RESULT_STATUSES = frozenset(BPB_REQUIRED | {"diverged"})
# Rows whose bpb is a validation measurement at a rung (a promoted row repeats the rung result that earned it).
MEASURED_STATUSES = frozenset(BPB_REQUIRED | {"promoted"})
# Rows that may count toward victory (pre-registration v2): from-scratch confirmation runs on a victory
# seed, judged on their test_bpb. The reproduce row (the selected run re-run on its search seed) is
# evidence of reproducibility and never counts; rung results, pruned and diverged rows never count.
VICTORY_STATUSES = frozenset({"confirmed"})
REQUIRED = ("ts", "sha", "dirty", "run_id", "config_id", "config", "family", "seed", "step", "bpb", "status")
OPTIONAL = ("decided_by", "score", "event_id", "preset", "wall_s", "note", "extra", "test_bpb")
_SHA_RE = re.compile(r"^(?:[0-9a-f]{7,64}|unknown)$")


class LedgerError(ValueError):
    """A ledger row or file is invalid; the message names the file, line and field."""


@dataclass(frozen=True)
class CodeVersion:
    """The commit of the code that produced a row, and whether the work tree differed from it."""
    sha: str
    dirty: bool


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess[str] | None:
    try:
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None


def code_version(repo_dir: str | os.PathLike[str] | None = None) -> CodeVersion:
    """HEAD sha ("unknown" without git or commits) and dirtiness (untracked files count; unknown -> dirty)."""
    repo = Path(repo_dir) if repo_dir is not None else repo_root()
    head = _git(repo, "rev-parse", "--verify", "-q", "HEAD")
    sha = head.stdout.strip().lower() if head is not None and head.returncode == 0 else ""
    status = _git(repo, "status", "--porcelain")
    clean = status is not None and status.returncode == 0 and not status.stdout.strip()
    if not _SHA_RE.match(sha) or sha == "unknown":
        return CodeVersion("unknown", True)
    return CodeVersion(sha, not clean)


def utc_now() -> str:
    """Current time as ISO 8601 UTC with microseconds."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class LedgerRow:
    """One ledger row; `to_dict()` gives its JSON form (optional fields left out when None)."""
    run_id: str
    config_id: str
    config: Mapping[str, Any]
    family: str
    seed: int
    step: int
    bpb: float | None
    status: str
    sha: str
    dirty: bool
    ts: str = field(default_factory=utc_now)
    decided_by: str | None = None
    score: float | Mapping[str, Any] | None = None
    event_id: int | None = None
    preset: str | None = None
    wall_s: float | None = None
    note: str | None = None
    extra: Mapping[str, Any] | None = None
    test_bpb: float | None = None   # BPB on the test half (victory runs only; nothing selects on it)

    @classmethod
    def stamped(cls, version: CodeVersion, **fields: Any) -> "LedgerRow":
        """A row stamped with a CodeVersion's sha and dirty flag."""
        return cls(sha=version.sha, dirty=version.dirty, **fields)

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in REQUIRED}
        d.update({k: getattr(self, k) for k in OPTIONAL if getattr(self, k) is not None})
        return d


def _nonempty_str(v: Any) -> bool:
    return isinstance(v, str) and bool(v.strip())


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_ts(v: Any) -> str | None:
    if not isinstance(v, str):
        return "must be an ISO 8601 UTC string"
    try:
        t = datetime.fromisoformat(v)
    except ValueError:
        return f"is not ISO 8601: {v!r}"
    if t.utcoffset() != timedelta(0):
        return f"must be UTC (offset +00:00 or Z), got {v!r}"
    return None


def _check_score(v: Any) -> str | None:
    if _is_num(v):
        return None if math.isfinite(v) else f"must be finite, got {v!r}"
    if isinstance(v, dict) and v:
        for k, x in v.items():
            if not isinstance(k, str):
                return f"keys must be strings, got {k!r}"
            if _is_num(x) and not math.isfinite(x):
                return f"entry {k!r} must be finite (or null), got {x!r}"
            if not (x is None or isinstance(x, (str, bool)) or _is_num(x)):
                return f"entry {k!r} must be a number, string, bool or null, got {type(x).__name__}"
        return None
    return f"must be a finite number or a non-empty object of scores, got {v!r}"


_STATUS_WHAT = f"must be one of {sorted(STATUSES)}"


def _field_errors(d: Mapping[str, Any]) -> tuple[str, str] | None:
    """(field, what is wrong) for the first invalid field of a row dict, or None."""
    for k in REQUIRED:
        if k not in d:
            return k, "is missing"
    unknown = sorted(set(d) - set(REQUIRED) - set(OPTIONAL))
    if unknown:
        return unknown[0], "is not a ledger field (put free-form data under 'extra')"
    checks: list[tuple[str, bool, str]] = [
        ("sha", isinstance(d["sha"], str) and bool(_SHA_RE.match(d["sha"])), "must be a lowercase hex sha or 'unknown'"),
        ("dirty", isinstance(d["dirty"], bool), "must be true or false"),
        ("run_id", _nonempty_str(d["run_id"]), "must be a non-empty string"),
        ("config_id", _nonempty_str(d["config_id"]), "must be a non-empty string"),
        ("config", isinstance(d["config"], dict), "must be an object"),
        ("family", _nonempty_str(d["family"]), "must be a non-empty string"),
        ("seed", _is_int(d["seed"]), "must be an integer"),
        ("step", _is_int(d["step"]) and d["step"] >= 0, "must be an integer >= 0"),
        ("status", d["status"] in STATUSES, _STATUS_WHAT),
        ("bpb", d["bpb"] is None or (_is_num(d["bpb"]) and math.isfinite(d["bpb"]) and d["bpb"] > 0),
         "must be a finite number > 0 or null (bits per byte: a cross-entropy, never <= 0)"),
    ]
    for name, ok, what in checks:
        if not ok:
            return name, f"{what}, got {d[name]!r}"
    bad_ts = _check_ts(d["ts"])
    if bad_ts:
        return "ts", bad_ts
    status = d["status"]
    if status in BPB_REQUIRED and d["bpb"] is None:
        return "bpb", f"status '{status}' needs a measured finite bpb, got null"
    if status == "diverged" and d["bpb"] is not None:
        return "bpb", f"status 'diverged' must have bpb null, got {d['bpb']!r}"
    if status == "pruned":
        for k in ("decided_by", "score"):
            if d.get(k) is None:
                return k, "is required on a pruned row (which rule pruned it, and with what score)"
    if d.get("decided_by") is not None and not _nonempty_str(d["decided_by"]):
        return "decided_by", f"must be a non-empty string, got {d['decided_by']!r}"
    if d.get("score") is not None:
        bad = _check_score(d["score"])
        if bad:
            return "score", bad
    if d.get("event_id") is not None and not (_is_int(d["event_id"]) and d["event_id"] >= 0):
        return "event_id", f"must be an integer >= 0, got {d['event_id']!r}"
    if d.get("test_bpb") is not None and not (_is_num(d["test_bpb"]) and math.isfinite(d["test_bpb"])
                                              and d["test_bpb"] > 0):
        return "test_bpb", f"must be a finite number > 0 (or absent), got {d['test_bpb']!r}"
    if d.get("wall_s") is not None and not (_is_num(d["wall_s"]) and math.isfinite(d["wall_s"]) and d["wall_s"] >= 0):
        return "wall_s", f"must be a finite number >= 0, got {d['wall_s']!r}"
    for k in ("preset", "note"):
        if d.get(k) is not None and not isinstance(d[k], str):
            return k, f"must be a string, got {d[k]!r}"
    if d.get("extra") is not None and not isinstance(d["extra"], dict):
        return "extra", f"must be an object, got {d['extra']!r}"
    return None


def row_kind(status: str) -> str:
    """The kind of row an event may write once: 'promoted', 'pruned' or 'result' (every other status)."""
    return status if status in ("promoted", "pruned") else "result"


def row_key(d: Mapping[str, Any]) -> tuple[str, int, str] | None:
    """(run_id, event_id, kind): a run writes at most one row per key; None for rows without an event id."""
    eid = d.get("event_id")
    return None if eid is None else (d["run_id"], int(eid), row_kind(d["status"]))


def in_event_order(d: Mapping[str, Any]) -> bool:
    """Whether a row is held to its run's non-decreasing event ids: every row except an asynchronous
    result row (extra.arrival: the order in which results reached the race), whose action may have
    been issued long before other rows were written (decisions are still written in action-id order)."""
    extra = d.get("extra")
    return not (row_kind(d["status"]) == "result" and isinstance(extra, dict) and _is_int(extra.get("arrival")))


def normalize_row(row: LedgerRow | Mapping[str, Any]) -> dict[str, Any]:
    """Row as a validated dict; a NaN/inf bpb becomes null, allowed only with status 'diverged'."""
    d = row.to_dict() if isinstance(row, LedgerRow) else dict(row)
    bpb = d.get("bpb")
    if _is_num(bpb) and not math.isfinite(bpb):
        if d.get("status") != "diverged":
            raise LedgerError(f"field 'bpb': non-finite value {bpb!r} is allowed only with status 'diverged', "
                              f"got status {d.get('status')!r}")
        d["bpb"] = None
    bad = _field_errors(d)
    if bad:
        raise LedgerError(f"field '{bad[0]}' {bad[1]}")
    if not _plainly_strict_json(d):   # only what the fast check cannot vouch for is encoded to find out
        try:
            json.dumps(d, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise LedgerError(f"row is not strict JSON: {e}") from None
    return d


_JSON_SCALARS = frozenset({str, int, bool, type(None)})
_JSON_NESTED = frozenset({dict, list, tuple})


def _plainly_strict_json(v: Any, depth: int = 0) -> bool:
    """True only when `json.dumps(v, allow_nan=False)` certainly succeeds: built-in str, int, bool, None, finite
    floats, and lists, tuples and str-keyed dicts of them, at most 32 deep; False means "encode it to know".
    Types are read a container at a time and its floats summed (finite when their sum is; an overflow asks json)."""
    t = type(v)
    if t in _JSON_SCALARS:
        return True
    if t is float:
        return math.isfinite(v)
    if t not in _JSON_NESTED or depth >= 32:
        return False
    if t is dict:
        if not set(map(type, v)) <= {str}:
            return False
        v = v.values()
    kinds = set(map(type, v))
    if float in kinds:
        if not math.isfinite(sum(x for x in v if type(x) is float)):
            return False
        kinds.discard(float)
    if kinds <= _JSON_SCALARS:
        return True
    if not kinds <= _JSON_SCALARS | _JSON_NESTED:
        return False
    return all(_plainly_strict_json(x, depth + 1) for x in v if type(x) in _JSON_NESTED)
