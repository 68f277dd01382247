"""The run directory (--out) of a race: race.json and its specification, resume checks, the leaderboard
rebuilt from the ledger, and the confirmation rows owed to the canonical ledger.

race.json holds the run id, seed, preset and the race's specification (`race_spec`); a resume
must match it exactly. The ledger (ledger.jsonl) is the source of truth: the SQLite leaderboard
(race.db) is rebuilt from it on resume.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from igla_jax.evidence.leaderboard import Leaderboard
from igla_jax.evidence.ledger import Ledger, read_ledger
from igla_jax.evidence.ledger_row import utc_now
from igla_jax.evidence.prereg import Prereg
from igla_jax.execution.presets import RaceSetupError
from igla_jax.execution.rows import board_add
from igla_jax.search.race import RaceConfig


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes ('missing' when absent), for the race specification."""
    import hashlib
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except FileNotFoundError:
        return "missing"


def race_spec(*, seed: int, preset: str, race_config: RaceConfig, prereg: Prereg, roles: dict[str, str | None],
              extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Everything that defines a race; a resume must match it exactly (race.json's "spec").

    roles: the plugged-in role names (sampler, filter, pruner, allocator); extra: the CLI's
    accelerator flags and the sha256 of each verdict's source file.
    """
    budget = {"budget_s": race_config.budget_s} if race_config.budget_s is not None else {}
    return {"seed": seed, "preset": preset, "search_seed": race_config.search_seed,
            "rungs": list(race_config.rungs), "max_trials": race_config.max_trials, **budget,
            "prereg_version": prereg.version, "roles": dict(roles), **(extra or {})}


def _spec_diff(old: Any, new: dict[str, Any]) -> list[str]:
    if not isinstance(old, dict):
        return ["spec (missing from race.json: the race was started by an older version)"]
    keys = sorted(set(old) | set(new))
    return [f"{k}: recorded {old.get(k)!r}, now {new.get(k)!r}" for k in keys if old.get(k) != new.get(k)]


def prepare_out(out: Path, *, seed: int, preset: str, spec: dict[str, Any], resume: bool, kind: str = "race") -> str:
    """Creates/validates the run directory and returns the run id (read back on resume; `kind` prefixes a new one)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write_probe"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise RaceSetupError(f"--out {out}: not a writable directory ({e.strerror or e})") from None
    manifest = out / "race.json"
    if resume and not manifest.is_file() and not _has_rows(out / "ledger.jsonl"):
        resume = False   # a race killed in its first seconds wrote nothing to continue: start it
    if resume:
        if not manifest.is_file():
            raise RaceSetupError(f"--resume: {manifest} not found; there is no race to resume in --out {out}")
        try:
            m = json.loads(manifest.read_text())
            run_id, m_seed, m_preset = m["run_id"], m["seed"], m["preset"]
        except (ValueError, KeyError, TypeError) as e:
            raise RaceSetupError(f"--resume: {manifest} is not a race manifest ({e})") from None
        if (m_seed, m_preset) != (seed, preset):
            raise RaceSetupError(f"--resume: {manifest} is a race with --seed {m_seed} --preset {m_preset}, "
                                 f"not --seed {seed} --preset {preset}")
        diff = _spec_diff(m.get("spec"), spec)
        if diff:
            raise RaceSetupError(f"--resume: {manifest} was started with another specification; a resumed race "
                                 f"must be the same race ({'; '.join(diff)}). Resume with the original flags "
                                 "or start a fresh --out")
        return run_id
    if manifest.exists() or (out / "ledger.jsonl").exists():
        raise RaceSetupError(f"--out {out} already holds a race; pass --resume to continue it or choose another --out")
    run_id = f"{kind}-s{seed}-{preset}-{utc_now().replace(':', '').replace('-', '')[:15]}"
    tmp = manifest.with_name("race.json.tmp")
    tmp.write_text(json.dumps({"run_id": run_id, "seed": seed, "preset": preset, "spec": spec,
                               "created": utc_now()}, indent=1))
    os.replace(tmp, manifest)
    return run_id


def _has_rows(ledger: Path) -> bool:
    try:
        return ledger.stat().st_size > 0
    except FileNotFoundError:
        return False


def recorded_budget(out: Path) -> float | None:
    """The budget_s in --out's race.json (None: none recorded, or no readable race.json)."""
    try:
        spec = json.loads((Path(out) / "race.json").read_text()).get("spec") or {}
    except (OSError, ValueError, AttributeError):
        return None
    b = spec.get("budget_s") if isinstance(spec, dict) else None
    return float(b) if isinstance(b, (int, float)) else None


def rebuild_board(db: Path, rows: list[dict], prereg: Prereg) -> Leaderboard:
    """A fresh leaderboard mirroring the ledger rows (the ledger is the source of truth)."""
    for p in (db, db.with_name(db.name + "-journal")):
        if p.exists():
            p.unlink()
    board = Leaderboard(db, prereg=prereg)
    for r in rows:
        board_add(board, r)
    return board


def is_confirmation_row(row: dict) -> bool:
    """A confirmation-phase row (confirm or reproduce, diverged or failed ones included): canonical-ledger material."""
    return (row.get("extra") or {}).get("action") in ("confirm", "reproduce")


def reconcile_canonical(canon: Ledger, run_rows: list[dict], run_id: str) -> frozenset:
    """Appends to the canonical ledger every confirmation row of this run it lacks; returns its keys.

    A kill between the run-ledger append and the canonical append would otherwise lose that row
    from assertions/seed_results.jsonl for good (resume answers the action from the run ledger and
    never writes it again). Keys are (run_id, event_id, status): nothing is appended twice.
    """
    keys = {(r["run_id"], r.get("event_id"), r["status"])
            for r in read_ledger(canon.path, missing_ok=True).rows if r["run_id"] == run_id}
    for r in run_rows:
        key = (r["run_id"], r.get("event_id"), r["status"])
        if r.get("run_id") == run_id and is_confirmation_row(r) and key not in keys:
            canon.append(r)
            keys.add(key)
    return frozenset(keys)
