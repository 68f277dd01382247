"""The recorded learning-curve table: real training curves of a race preset, recorded once, replayed many times.

One JSON line per (config, seed) run, appended and fsynced as each run finishes (a kill loses at
most the run in flight; a torn last line is cut off on the next open). A row:

    {"config_id", "config", "family", "stratum": "phi" | "uniform", "seed", "seed_role": "primary" |
     "extra", "status": "ok" | "diverged", "ladder": [steps...], "val_bpb": [BPB at each ladder step,
     null after a divergence], "segment_s": [training seconds of each ladder segment, compile
     excluded], "eval_s": [seconds of each evaluation], "train_bits": [mean training bits of every
     chunk of CHUNK steps], "chunk": CHUNK, "shape": "family/wW/dD", "sha", "dirty", "ts"}

Compile seconds are recorded apart, once per shape, in the manifest's "compile_s" (a replay charges
them once per shape and worker). Each run is exactly a live trial of the preset on that seed: the
same configs, lr horizon (the last rung), batches and arithmetic (bit-exact resume makes evaluating
at extra ladder points free of side effects); `experiments.record_curves` checks this on a sample.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import platform
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from igla_jax.evidence.ledger_row import CodeVersion, utc_now
from igla_jax.search.search_space import Config, SearchSpace, config_from_dict

STRATA = ("phi", "uniform")
SEED_ROLES = ("primary", "extra")
ROW_KEYS = ("config_id", "config", "family", "stratum", "seed", "seed_role", "status", "ladder", "val_bpb",
            "segment_s", "eval_s", "train_bits", "chunk", "shape", "sha", "dirty", "ts")


class CurveError(ValueError):
    """A curve table or manifest is malformed, or a request asks for something it did not record."""


def ladder_for(rungs: Sequence[int]) -> tuple[int, ...]:
    """Evaluation steps: every rung plus the points between (100, 200, 300, 600, 900, 1800, 2700 for tenth)."""
    pts = set(int(r) for r in rungs)
    for a, b in zip(rungs, rungs[1:]):
        pts.add(int(2 * a) if 2 * a < b else int(a))
    return tuple(sorted(pts))


def shape_key(cfg: Config) -> str:
    """The compiled-program key of a config: its family, width and depth (context is the preset's)."""
    return f"{cfg.family}/w{cfg.width}/d{cfg.depth}"


@dataclasses.dataclass(frozen=True)
class PlannedRun:
    config: Config
    stratum: str
    seed: int
    seed_role: str


def plan(space: SearchSpace, phi_grid_of: Callable[[str], list[Config]], *, families: Sequence[str],
         per_stratum: int, extra_every: int, primary_seed: int, extra_seeds: Sequence[int],
         seed: int = 0, exclude: frozenset[str] = frozenset()) -> list[PlannedRun]:
    """The recording order: round robin over (family, stratum), extra seeds right after their primary.

    Per family, `per_stratum` configs drawn without replacement from the phi-grid and as many from
    the full grid minus the phi-grid (disjoint strata); every `extra_every`-th config of a stratum
    (positions 0, extra_every, ...) also runs on the extra seeds: a stratified share of ~1/extra_every.
    A partial table is therefore balanced at any point. `seed` is the plan seed (the committed table is
    plan seed 0); configs whose id is in `exclude` (another table's) are drawn by neither stratum, so a
    held-out table shares no config with the development table. With no exclusion the draw is the one
    every earlier table was planned with.
    """
    lists: list[list[PlannedRun]] = []
    for fam in families:
        phi = phi_grid_of(fam)
        phi_ids = {c.config_id for c in phi}
        rng = np.random.default_rng([seed, list(families).index(fam)])
        pool = [c for c in phi if c.config_id not in exclude]
        take_phi = [pool[i] for i in rng.choice(len(pool), size=min(per_stratum, len(pool)), replace=False)]
        size = space.size(fam)
        uni: list[Config] = []
        for i in rng.permutation(size):
            c = space.config_at(fam, int(i))
            if c.config_id not in phi_ids and c.config_id not in exclude:
                uni.append(c)
            if len(uni) == per_stratum:
                break
        for stratum, cfgs in (("phi", take_phi), ("uniform", uni)):
            runs: list[PlannedRun] = []
            for k, c in enumerate(cfgs):
                runs.append(PlannedRun(c, stratum, primary_seed, "primary"))
                if extra_every and k % extra_every == 0:
                    runs.extend(PlannedRun(c, stratum, s, "extra") for s in extra_seeds)
            lists.append(runs)
    out: list[PlannedRun] = []
    idx = [0] * len(lists)
    while any(i < len(lst) for i, lst in zip(idx, lists)):
        for j, lst in enumerate(lists):  # one config (with its extra seeds) from each list in turn
            if idx[j] < len(lst):
                head = lst[idx[j]]
                group = [head]
                idx[j] += 1
                while idx[j] < len(lst) and lst[idx[j]].seed_role == "extra" and lst[idx[j]].config == head.config:
                    group.append(lst[idx[j]])
                    idx[j] += 1
                out.extend(group)
    return out


def validate_row(d: Any, where: str) -> dict[str, Any]:
    """Checks one table row; raises CurveError naming `where` and the field."""
    if not isinstance(d, dict):
        raise CurveError(f"{where}: a row must be a JSON object")
    missing = [k for k in ROW_KEYS if k not in d]
    if missing:
        raise CurveError(f"{where}: field {missing[0]!r} is missing")
    cfg = config_from_dict(d["config"], source=f"{where} config")
    if cfg.config_id != d["config_id"]:
        raise CurveError(f"{where}: config_id {d['config_id']!r} does not match its config ({cfg.config_id})")
    if d["stratum"] not in STRATA or d["seed_role"] not in SEED_ROLES or d["status"] not in ("ok", "diverged"):
        raise CurveError(f"{where}: stratum/seed_role/status must be one of {STRATA}/{SEED_ROLES}/(ok, diverged)")
    n = len(d["ladder"])
    if n == 0 or list(d["ladder"]) != sorted(set(d["ladder"])):
        raise CurveError(f"{where}: field 'ladder' must be strictly increasing steps")
    for k in ("val_bpb", "segment_s", "eval_s"):
        if not isinstance(d[k], list) or len(d[k]) != n:
            raise CurveError(f"{where}: field {k!r} needs one entry per ladder step ({n})")
    for i, b in enumerate(d["val_bpb"]):
        if b is not None and not (isinstance(b, (int, float)) and math.isfinite(b) and b > 0):
            raise CurveError(f"{where}: val_bpb[{i}] = {b!r} must be a finite number > 0 or null")
    if d["status"] == "ok" and any(b is None for b in d["val_bpb"]):
        raise CurveError(f"{where}: status 'ok' needs a val_bpb at every ladder step")
    return d


@dataclasses.dataclass(frozen=True)
class CurveTable:
    """A read table: rows in file order, plus lookups by (config_id, seed)."""
    path: Path
    rows: tuple[dict[str, Any], ...]

    def by_key(self) -> dict[tuple[str, int], dict[str, Any]]:
        return {(r["config_id"], r["seed"]): r for r in self.rows}

    def bpb_at(self, config_id: str, seed: int, step: int) -> float | None:
        """Recorded validation BPB at (config, seed, step); None when the run diverged by then.

        Raises CurveError naming what was asked when the table has no such run or step (never a made-up value).
        """
        r = self.by_key().get((config_id, seed))
        if r is None:
            raise CurveError(f"{self.path}: no recorded run of config {config_id} on seed {seed}")
        if step not in r["ladder"]:
            raise CurveError(f"{self.path}: config {config_id} seed {seed} has no evaluation at step {step} "
                             f"(ladder {r['ladder']})")
        return r["val_bpb"][r["ladder"].index(step)]


def read_table(path: str | os.PathLike, *, missing_ok: bool = False) -> CurveTable:
    """Reads and validates a table; a torn last line (no newline) is ignored, any other bad line is an error."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        if missing_ok:
            return CurveTable(p, ())
        raise CurveError(f"{p}: curve table not found") from None
    lines = raw.split(b"\n")
    lines.pop()  # complete lines end with a newline; what follows the last one is a torn tail, if anything
    rows = []
    seen: dict[tuple[str, int], int] = {}
    for i, line in enumerate(lines, 1):
        where = f"{p}: line {i}"
        try:
            d = json.loads(line)
        except ValueError as e:
            raise CurveError(f"{where}: not valid JSON ({e})") from None
        validate_row(d, where)
        key = (d["config_id"], d["seed"])
        if key in seen:
            raise CurveError(f"{where}: config {key[0]} seed {key[1]} was already recorded on line {seen[key]}")
        seen[key] = i
        rows.append(d)
    return CurveTable(p, tuple(rows))


class TableWriter:
    """Appends validated rows, one fsynced line each; cuts a torn last line off first."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            raw = self.path.read_bytes()
            if raw and not raw.endswith(b"\n"):
                keep = raw.rfind(b"\n") + 1
                with open(self.path, "r+b") as f:
                    f.truncate(keep)
                    f.flush()
                    os.fsync(f.fileno())
        self.table = read_table(self.path, missing_ok=True)
        self.done = set(self.table.by_key())

    def append(self, row: dict[str, Any]) -> None:
        validate_row(row, f"{self.path}: new row")
        key = (row["config_id"], row["seed"])
        if key in self.done:
            raise CurveError(f"{self.path}: config {key[0]} seed {key[1]} is already recorded")
        with open(self.path, "ab") as f:
            f.write(json.dumps(row, allow_nan=False, separators=(",", ":")).encode() + b"\n")
            f.flush()
            os.fsync(f.fileno())
        self.done.add(key)


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else "missing"


def hardware() -> dict[str, Any]:
    """What ran the recording: CPU model, cores, platform and the JAX backend and devices."""
    import jax
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "jax": jax.__version__, "backend": jax.default_backend(),
            "devices": [str(d) for d in jax.devices()]}


def counts(rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Runs per family x stratum x seed role, and diverged runs."""
    c: dict[str, int] = {}
    div = 0
    for r in rows:
        k = f"{r['family']}/{r['stratum']}/{r['seed_role']}"
        c[k] = c.get(k, 0) + 1
        div += r["status"] == "diverged"
    return {"runs": sum(c.values()), "by_family_stratum_role": dict(sorted(c.items())), "diverged": div}


def write_manifest(path: Path, table_path: Path, info: dict[str, Any]) -> None:
    """Rewrites the manifest atomically with the table's current counts and sha256."""
    table = read_table(table_path, missing_ok=True)
    doc = {**info, "table": table_path.name, "table_sha256": file_sha256(table_path), "counts": counts(table.rows),
           "updated": utc_now()}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


def record_run(run: PlannedRun, *, context: int, batch: int, head_dim: int, horizon: int,
               ladder: Sequence[int], version: CodeVersion) -> dict[str, Any]:
    """Trains one (config, seed) to the last ladder step, evaluating validation BPB at every ladder step."""
    import jax
    import jax.numpy as jnp
    from igla_jax.training.data import splits
    from igla_jax.training.step import CHUNK, _summarise, init_state, train_chunk, validation_bpb
    cfg = run.config
    mc = cfg.to_model_config(context=context, head_dim=head_dim)
    tc = cfg.to_train_config(seed=run.seed, total_steps=horizon, batch=batch)
    state = init_state(mc, tc)
    train_N = jnp.asarray(splits()[0])
    bpbs: list[float | None] = []
    seg_s: list[float] = []
    ev_s: list[float] = []
    bits: list[float] = []
    status = "ok"
    for to in ladder:
        if status != "ok":
            bpbs.append(None), seg_s.append(0.0), ev_s.append(0.0)
            continue
        end = jnp.asarray(to, jnp.int32)
        t0 = time.perf_counter()
        while int(state.step) < to:
            state, trace = train_chunk(state, train_N, end, batch=tc.batch)
            finite, b = _summarise(np.asarray(trace))
            bits.append(round(b, 6) if math.isfinite(b) else None)
            if not finite:
                status = "diverged"
                break
        jax.block_until_ready(state.params)
        seg_s.append(round(time.perf_counter() - t0, 4))
        if status != "ok":
            bpbs.append(None), ev_s.append(0.0)
            continue
        t1 = time.perf_counter()
        bpbs.append(float(validation_bpb(state)))
        ev_s.append(round(time.perf_counter() - t1, 4))
    return {"config_id": cfg.config_id, "config": cfg.to_dict(), "family": cfg.family, "stratum": run.stratum,
            "seed": run.seed, "seed_role": run.seed_role, "status": status, "ladder": list(ladder), "val_bpb": bpbs,
            "segment_s": seg_s, "eval_s": ev_s, "train_bits": bits, "chunk": CHUNK, "shape": shape_key(cfg),
            "sha": version.sha, "dirty": version.dirty, "ts": utc_now()}


def warm_shape(cfg: Config, *, context: int, batch: int, head_dim: int, horizon: int) -> dict[str, float]:
    """Compiles a shape's training chunk and evaluation once (a throwaway state); returns their compile seconds.

    Compile seconds = first call minus a second, warm call of the same program.
    """
    import jax
    import jax.numpy as jnp
    from igla_jax.training.data import splits
    from igla_jax.training.step import init_state, train_chunk, validation_bpb
    mc = cfg.to_model_config(context=context, head_dim=head_dim)
    tc = cfg.to_train_config(seed=0, total_steps=horizon, batch=batch)
    train_N = jnp.asarray(splits()[0])
    out = {}
    times = []
    state = init_state(mc, tc)
    for k in range(2):
        t0 = time.perf_counter()
        state, _ = train_chunk(state, train_N, jnp.asarray(10**9, jnp.int32), batch=tc.batch)
        jax.block_until_ready(state.params)
        times.append(time.perf_counter() - t0)
    out["train_s"] = round(max(0.0, times[0] - times[1]), 3)
    times = []
    for k in range(2):
        t0 = time.perf_counter()
        validation_bpb(state)
        times.append(time.perf_counter() - t0)
    out["eval_s"] = round(max(0.0, times[0] - times[1]), 3)
    return out


def manifest_path(table_path: str | os.PathLike) -> Path:
    """The manifest beside a table: curves_tenth.jsonl -> curves_tenth.manifest.json."""
    p = Path(table_path)
    return p.with_name(p.name.removesuffix(".jsonl") + ".manifest.json")


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """Reads a table's manifest; raises CurveError naming the file when it is missing or malformed."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text())
    except FileNotFoundError:
        raise CurveError(f"{p}: curve-table manifest not found (it is written beside the table by "
                         "python -m experiments.record_curves)") from None
    except ValueError as e:
        raise CurveError(f"{p}: not valid JSON ({e})") from None
    if not isinstance(doc, dict):
        raise CurveError(f"{p}: a manifest must be a JSON object")
    for k in ("preset", "ladder", "rungs", "seeds", "compile_s"):
        if k not in doc:
            raise CurveError(f"{p}: field {k!r} is missing")
    if not isinstance(doc["seeds"], dict) or not isinstance(doc["seeds"].get("primary"), int):
        raise CurveError(f"{p}: field 'seeds' needs an integer 'primary' seed, got {doc['seeds']!r}")
    if not isinstance(doc["compile_s"], dict):
        raise CurveError(f"{p}: field 'compile_s' must map shape -> {{train_s, eval_s}}")
    return doc
