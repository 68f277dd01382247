"""The assertion registry (assertions/igla_assertions.json): its entries, loaded with every schema
problem recorded on the entry rather than raised. Audited by `igla_jax.evidence.audit`."""
from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

STATUSES = ("Proven", "Admitted", "Empirical", "Falsified")
FIELDS = ("id", "name", "statement", "status", "coq_file", "coq_lemma", "runtime_check",
          "runtime_check_status", "tests", "tests_status", "evidence")


class RegistryError(ValueError):
    """The registry file is missing or not valid JSON of the expected shape."""


@dataclasses.dataclass(frozen=True)
class Entry:
    id: str
    name: str
    statement: str
    status: str
    coq_file: str | None
    coq_lemma: str | None
    runtime_check: str | None
    runtime_check_status: str
    tests: tuple[str, ...]
    tests_status: str
    evidence: str | None
    problems: tuple[str, ...] = ()  # schema problems found while loading


def _missing(declared: str) -> bool:
    return declared.startswith("missing:")


def _entry(i: int, raw: Any) -> Entry:
    """One entry, with every schema problem recorded rather than raised."""
    if not isinstance(raw, dict):
        return Entry(f"#{i}", "?", "", "?", None, None, None, "exists", (), "exists", None,
                     (f"entry #{i} is {type(raw).__name__}, expected an object",))
    p: list[str] = [f"unknown field {k!r} (known: {', '.join(FIELDS)})" for k in raw if k not in FIELDS]
    def text(k: str, required: bool) -> str | None:
        v = raw.get(k)
        if v is None and not required:
            return None
        if not isinstance(v, str) or not v.strip():
            p.append(f"field {k!r} must be a non-empty string, got {v!r}")
            return None if v is None else str(v)
        return v
    eid, name, statement = text("id", True) or f"#{i}", text("name", True) or "?", text("statement", True)
    status = text("status", True) or "?"
    if status not in STATUSES:
        p.append(f"status {status!r} is not one of {', '.join(STATUSES)}")
    coq_file, coq_lemma = text("coq_file", False), text("coq_lemma", False)
    if coq_lemma is not None and not re.fullmatch(r"[A-Za-z_][\w']*", coq_lemma):
        p.append(f"coq_lemma {coq_lemma!r} is not a Coq identifier (give the bare name; the module comes from coq_file)")
    if (coq_file is None) != (coq_lemma is None):
        p.append("coq_file and coq_lemma must both be set or both be null")
    if status == "Proven" and coq_lemma is None:
        p.append("status Proven needs a Coq lemma (coq_file, coq_lemma)")
    check = text("runtime_check", False)
    declared = {}
    for k in ("runtime_check_status", "tests_status"):
        d = raw.get(k, "exists")
        if not isinstance(d, str) or not (d == "exists" or (_missing(d) and d[8:].strip())):
            p.append(f"{k} must be 'exists' or 'missing: <why>', got {d!r}")
            d = "exists"
        declared[k] = d
    if check is None and not _missing(declared["runtime_check_status"]):
        p.append("runtime_check is null: say why with runtime_check_status 'missing: <why>'")
    tests = raw.get("tests", [])
    if not isinstance(tests, list) or not all(isinstance(t, str) and t for t in tests):
        p.append(f"tests must be a list of pytest node ids, got {tests!r}")
        tests = []
    if not tests and not _missing(declared["tests_status"]):
        p.append("names no test: list the tests that check it, or set tests_status 'missing: <why>'")
    evidence = text("evidence", status in ("Empirical", "Falsified"))
    return Entry(eid, name, statement or "", status, coq_file, coq_lemma, check,
                 declared["runtime_check_status"], tuple(tests), declared["tests_status"],
                 evidence, tuple(p))


def load_registry(path: str | Path) -> tuple[Entry, ...]:
    """Reads the registry; file-level errors raise RegistryError, entry-level ones are kept."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise RegistryError(f"cannot read registry {path}: {e.strerror or e}") from None
    except json.JSONDecodeError as e:
        raise RegistryError(f"registry {path} is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}") from None
    if not isinstance(data, dict) or not isinstance(data.get("entries"), list):
        raise RegistryError(f"registry {path}: expected an object with an 'entries' list")
    entries = [_entry(i, raw) for i, raw in enumerate(data["entries"])]
    seen: dict[str, int] = {}
    for k, e in enumerate(entries):
        if e.id in seen:
            entries[k] = dataclasses.replace(e, problems=e.problems + (f"duplicate id {e.id!r} (also entry #{seen[e.id]})",))
        seen.setdefault(e.id, k)
    return tuple(entries)
