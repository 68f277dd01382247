"""Replayed races: the live race state machine answered from the recorded learning-curve table.

`ReplayBackend` implements the backend protocol (`igla_jax.execution.backends`) on a simulated clock: a
Train / Reproduce action is answered with the table's validation BPB at its step, and costs the
recorded training seconds of the ladder segments it covers plus the evaluation at its step, plus
the shape's compile seconds (manifest `compile_s`, train + eval) the first time a worker runs
that shape. n workers pull actions first come, first served; finished actions come back from a
heap keyed (finish time, action id), so ties break by action id and what is replayed is
asynchronous promotion. `igla_jax.execution.backends.drive` steps the pure race with those events and writes the
live executor's rows, each marked `extra.replayed` (table, table_sha256, sim_time_s, arrival, the
recorded seed that answered it). `igla_jax.execution.race_runner.run_replay` wires a whole replayed race.

Only what was recorded is answered: a config, seed or step outside the table, a shape without
compile seconds, or a Confirm (the table records no test BPB and no victory-seed runs) raises
ReplayError naming it, never a made-up value.
"""
from __future__ import annotations

import collections
import dataclasses
import functools
import heapq
import itertools
import math
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from igla_jax.curves.table import (STRATA, CurveError, file_sha256, manifest_path, read_manifest, read_table,
                                   validate_row)
from igla_jax.execution.backends import Finished, Result
from igla_jax.search.race_types import Confirm, Reproduce, Train
from igla_jax.search.search_space import Config, SearchSpaceError, config_from_dict


class ReplayError(CurveError):
    """A replay asked the table for something it did not record (config, seed, step, shape, test BPB)."""


@dataclasses.dataclass(frozen=True)
class RecordedRun:
    """One (config, seed) row of the table, indexed for O(1) answers."""
    config: Config
    seed: int
    seed_role: str
    stratum: str
    shape: str
    ladder: tuple[int, ...]
    val_bpb: tuple[float | None, ...]
    seg_cum: tuple[float, ...]      # seg_cum[i] = training seconds of segments 0..i
    eval_s: tuple[float, ...]
    chunks: int                     # training chunks the recorder ran (the last one diverged, if any)
    chunk: int
    train_bits: tuple[float | None, ...] = ()   # mean training bits of every recorded chunk

    @classmethod
    def from_row(cls, d: Mapping[str, Any]) -> "RecordedRun":
        return cls(config=config_from_dict(d["config"]), seed=int(d["seed"]), seed_role=d["seed_role"],
                   stratum=d["stratum"], shape=d["shape"], ladder=tuple(int(s) for s in d["ladder"]),
                   val_bpb=tuple(d["val_bpb"]), seg_cum=tuple(itertools.accumulate(float(s) for s in d["segment_s"])),
                   eval_s=tuple(float(s) for s in d["eval_s"]), chunks=len(d["train_bits"]), chunk=int(d["chunk"]),
                   train_bits=tuple(None if b is None else float(b) for b in d["train_bits"]))

    def chunk_span(self, lo: int, hi: int) -> tuple[float | None, ...]:
        """The recorded chunks of ladder segments lo+1..hi (indices; lo = -1 from step 0): the training
        curve a live trial records between those ladder steps (chunks restart at each ladder step)."""
        n_of = [-(-(b - a) // self.chunk) for a, b in zip((0,) + self.ladder[:-1], self.ladder)]
        start = sum(n_of[:lo + 1])
        return self.train_bits[start:start + sum(n_of[lo + 1:hi + 1])]

    def index(self, step: int, where: str) -> int:
        try:
            return self.ladder.index(step)
        except ValueError:
            raise ReplayError(f"{where}: config {self.config.config_id} ({self.config.short()}) seed {self.seed} has "
                              f"no evaluation at step {step} (ladder {list(self.ladder)})") from None

    def diverged_by(self, i: int) -> int:
        """The step the recorder stopped at when ladder segment i diverged (chunks restart at each ladder step)."""
        lo = self.ladder[i - 1] if i else 0
        before = sum(-(-(b - a) // self.chunk) for a, b in zip((0,) + self.ladder[:i], self.ladder[:i]))
        k = self.chunks - before
        return min(self.ladder[i], lo + k * self.chunk) if k >= 1 else self.ladder[i]


@dataclasses.dataclass(frozen=True, eq=False)
class ReplayTable:
    """A curve table and its manifest, ready to answer: runs by (config id, seed), compile seconds per shape."""
    name: str
    sha256: str
    preset: str | None
    rungs: tuple[int, ...]
    ladder: tuple[int, ...]
    primary_seed: int
    compile_s: Mapping[str, float]
    tokens_per_step: int            # batch x context of the recorded shape (tokens/s in the rows)
    runs: Mapping[tuple[str, int], RecordedRun]
    order: tuple[tuple[str, int], ...]   # (config id, seed) in table order

    @classmethod
    def from_rows(cls, rows: Sequence[Mapping[str, Any]], manifest: Mapping[str, Any], *, name: str,
                  sha256: str) -> "ReplayTable":
        """From validated table rows and a manifest dict (preset, rungs, ladder, seeds.primary, compile_s)."""
        primary = int(manifest["seeds"]["primary"])
        runs: dict[tuple[str, int], RecordedRun] = {}
        for i, d in enumerate(rows):
            validate_row(d, f"{name}: row {i + 1}")
            r = RecordedRun.from_row(d)
            if r.seed_role == "primary" and r.seed != primary:
                raise ReplayError(f"{name}: row {i + 1} (config {r.config.config_id}) is a primary run on seed "
                                  f"{r.seed}, but the manifest's primary seed is {primary}")
            runs[(r.config.config_id, r.seed)] = r
        try:
            comp = {str(k): float(v["train_s"]) + float(v["eval_s"]) for k, v in manifest["compile_s"].items()}
        except (TypeError, KeyError, ValueError) as e:
            raise ReplayError(f"{name}: manifest compile_s must map shape -> {{train_s, eval_s}} ({e!r})") from None
        tokens = int(manifest.get("batch") or 0) * int(manifest.get("context") or 0)
        return cls(name=name, sha256=sha256, preset=manifest.get("preset"), rungs=tuple(manifest["rungs"]),
                   ladder=tuple(manifest["ladder"]), primary_seed=primary, compile_s=comp, tokens_per_step=tokens,
                   runs=runs, order=tuple(runs))

    def run(self, cfg: Config, seed: int) -> RecordedRun:
        r = self.runs.get((cfg.config_id, seed))
        if r is None:
            raise ReplayError(f"{self.name}: no recorded run of config {cfg.config_id} ({cfg.short()}) on seed {seed}; "
                              "a replay answers only what the table recorded")
        return r

    def seeds_of(self, cfg: Config) -> tuple[int, ...]:
        """Recorded seeds of a config, primary first."""
        seeds = [s for (c, s) in self.runs if c == cfg.config_id]
        return tuple(sorted(seeds, key=lambda s: (s != self.primary_seed, s)))

    def compile_of(self, shape: str) -> float:
        if shape not in self.compile_s:
            raise ReplayError(f"{self.name}: the manifest records no compile seconds for shape {shape!r}")
        return self.compile_s[shape]


def load_table(path: str | Path, manifest: str | Path | None = None) -> ReplayTable:
    """Reads a table and its manifest (default: beside it, <stem>.manifest.json)."""
    p = Path(path)
    for _ in range(3):  # the recorder may append while we read: keep a read the sha256 brackets
        sha = file_sha256(p)
        t = read_table(p)
        if file_sha256(p) == sha:
            break
    else:
        raise ReplayError(f"{p}: the table changed during each of 3 reads; try again")
    m = read_manifest(manifest if manifest is not None else manifest_path(p))
    return ReplayTable.from_rows(t.rows, m, name=p.name, sha256=sha)


@dataclasses.dataclass(frozen=True)
class TableSpace:
    """A finite search space with the grid's interface (size, config_at, contains): the table's primary-seed
    configs of each family, in table order, so a sampler over it proposes only recorded configs."""
    by_family: tuple[tuple[str, tuple[Config, ...]], ...]
    head_dim: int = 32

    @functools.cached_property
    def _lists(self) -> dict[str, tuple[Config, ...]]:
        return dict(self.by_family)

    def configs(self, family: str) -> tuple[Config, ...]:
        return self._lists.get(family, ())

    def size(self, family: str) -> int:
        return len(self.configs(family))

    def config_at(self, family: str, index: int) -> Config:
        cfgs = self.configs(family)
        if not 0 <= index < len(cfgs):
            raise SearchSpaceError(f"index {index} outside [0, {len(cfgs)}) for family {family!r} of the table space")
        return cfgs[index]

    def contains(self, cfg: Config) -> bool:
        return cfg in self.configs(cfg.family)


def table_space(table: ReplayTable, *, strata: Sequence[str] = STRATA, head_dim: int = 32) -> TableSpace:
    """The table's primary-seed configs of the given strata (uniform: what a grid-uniform sampler may draw)."""
    bad = [s for s in strata if s not in STRATA]
    if bad:
        raise ReplayError(f"table_space strata {bad}: choose from {STRATA}")
    fams: dict[str, list[Config]] = {}
    for key in table.order:
        r = table.runs[key]
        if r.seed_role == "primary" and r.stratum in strata:
            fams.setdefault(r.config.family, []).append(r.config)
    return TableSpace(tuple((f, tuple(c)) for f, c in fams.items()), head_dim)


# ---------------------------------------------------------------- the simulated backend
@dataclasses.dataclass(frozen=True)
class _Job:
    action: Any
    issued_s: float
    run: RecordedRun
    bpb: float | None
    step: int
    train_s: float
    eval_s: float
    curve: tuple[float | None, ...] = ()


class ReplayBackend:
    """Answers compute actions from a ReplayTable on `workers` simulated workers (see the module docstring).

    draw_seed: None answers every action from the seed it names (in a replay the race's search
    seed is the table's primary seed); an int answers each config from one of its recorded seeds
    (primary or extra), drawn once per config from (draw_seed, config id), so a trial keeps its seed.
    """

    def __init__(self, table: ReplayTable, *, workers: int = 1, draw_seed: int | None = None):
        if workers < 1:
            raise ValueError(f"ReplayBackend workers={workers!r}: must be >= 1")
        self.table, self.workers, self.draw_seed = table, int(workers), draw_seed
        self._now = 0.0
        self._heap: list[tuple[float, int]] = []
        self._running: dict[int, tuple[_Job, int, float, float]] = {}   # id -> (job, worker, start, compile)
        self._queue: collections.deque[_Job] = collections.deque()
        self._free = list(range(self.workers))
        self._compiled: set[tuple[int, str]] = set()
        self._seed: dict[str, int] = {}
        self.compile_total_s = 0.0

    @property
    def now(self) -> float:
        return self._now

    def in_flight(self) -> int:
        return len(self._running) + len(self._queue)

    def seed_for(self, cfg: Config, seed: int) -> int:
        """The recorded seed that answers `cfg` when the race asks for `seed`."""
        if self.draw_seed is None:
            return seed
        if cfg.config_id not in self._seed:
            seeds = self.table.seeds_of(cfg)
            if not seeds:
                self.table.run(cfg, seed)  # raises, naming the config
            rng = np.random.default_rng([int(self.draw_seed) & 0xFFFFFFFF, int(cfg.config_id, 16)])
            self._seed[cfg.config_id] = seeds[int(rng.integers(len(seeds)))]
        return self._seed[cfg.config_id]

    def _answer(self, a: Any, issued: float) -> _Job:
        where = f"{self.table.name}: {type(a).__name__} action {a.action_id}"
        if isinstance(a, Confirm):
            raise ReplayError(f"{where}: Confirm of config {a.config.config_id} on victory seed {a.seed} asks for a "
                              "from-scratch run and its test BPB, which the table does not record; replay races "
                              "run with confirmation off")
        if not isinstance(a, (Train, Reproduce)):
            raise ReplayError(f"{where}: not a compute action")
        r = self.table.run(a.config, self.seed_for(a.config, a.seed))
        start = a.from_step if isinstance(a, Train) else 0
        j = r.index(a.to_step, where)
        i0 = r.index(start, where) if start else -1
        if i0 >= 0 and r.val_bpb[i0] is None:
            raise ReplayError(f"{where}: continues config {a.config.config_id} seed {r.seed} from step {start}, where "
                              "its recorded run had already diverged")
        bpb = r.val_bpb[j]
        if bpb is None:  # diverged inside (start, to]: charge the segments up to the one that diverged
            k = next(i for i in range(i0 + 1, j + 1) if r.val_bpb[i] is None)
            train = r.seg_cum[k] - (r.seg_cum[i0] if i0 >= 0 else 0.0)
            return _Job(a, issued, r, None, max(start + 1, r.diverged_by(k)), train, 0.0, r.chunk_span(i0, k))
        train = r.seg_cum[j] - (r.seg_cum[i0] if i0 >= 0 else 0.0)
        return _Job(a, issued, r, float(bpb), a.to_step, train, r.eval_s[j], r.chunk_span(i0, j))

    def submit(self, action: Any, now: float) -> None:
        job = self._answer(action, max(float(now), self._now))
        if self._free:
            self._start(job, heapq.heappop(self._free), job.issued_s)
        else:
            self._queue.append(job)

    def _start(self, job: _Job, worker: int, t: float) -> None:
        key = (worker, job.run.shape)
        comp = 0.0
        if key not in self._compiled:
            comp = self.table.compile_of(job.run.shape)
            self._compiled.add(key)
            self.compile_total_s += comp
        aid = job.action.action_id
        self._running[aid] = (job, worker, t, comp)
        heapq.heappush(self._heap, (t + comp + job.train_s + job.eval_s, aid))

    def _release(self, worker: int) -> None:
        heapq.heappush(self._free, worker)
        while self._queue and self._free:
            self._start(self._queue.popleft(), heapq.heappop(self._free), self._now)

    def poll(self) -> Finished | None:
        if not self._heap:
            return None
        finish, aid = heapq.heappop(self._heap)
        job, worker, start, comp = self._running.pop(aid)
        self._now = max(self._now, finish)
        self._release(worker)
        a, r = job.action, job.run
        steps = job.step - (a.from_step if isinstance(a, Train) else 0)
        tps = steps * self.table.tokens_per_step / job.train_s if job.train_s > 0 else 0.0
        res = Result(val_bpb=job.bpb if job.bpb is not None else math.nan, status="ok" if job.bpb is not None
                     else "diverged", step=job.step, params=None, tokens_per_s=tps,
                     wall_s=comp + job.train_s + job.eval_s, train_curve=job.curve)
        meta = {"trained_seed": r.seed, "seed_role": r.seed_role, "stratum": r.stratum,
                "compile_s": round(comp, 6), "train_s": round(job.train_s, 6), "eval_s": round(job.eval_s, 6)}
        return Finished(a, job.issued_s, start, finish, worker, res, meta,
                        note=f"answered by the recorded run on seed {r.seed} ({r.seed_role})")

    def cancel(self, action_id: int) -> bool:
        for job in self._queue:
            if job.action.action_id == action_id:
                self._queue.remove(job)
                return True
        if action_id not in self._running:
            return False
        _, worker, _, _ = self._running.pop(action_id)
        self._heap = [e for e in self._heap if e[1] != action_id]
        heapq.heapify(self._heap)
        self._release(worker)
        return True


def synthetic_rows(runs: Sequence[tuple[Config, int, str]], *, bpb: Callable[[Config, int, int], float | None],
                   segment_s: Callable[[Config, int, int], float], ladder: Sequence[int], rungs: Sequence[int],
                   primary_seed: int, compile_s: Mapping[str, float], eval_s: float = 0.0, preset: str | None = None,
                   stratum: Callable[[Config], str] = lambda c: "uniform", batch: int = 1, context: int = 1,
                   chunk: int = 32) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(table rows, manifest) of a hand-made table with known answers (tests, the harness's analytic checks).

    runs: (config, seed, seed_role); bpb(cfg, seed, step) is the BPB at a ladder step (None: the run
    diverged in the segment ending there and stays diverged); segment_s(cfg, seed, i) the training
    seconds of ladder segment i; compile_s: shape -> seconds (charged as train_s, eval_s 0).
    """
    from igla_jax.curves.table import shape_key
    rows = []
    for cfg, seed, role in runs:
        vals: list[float | None] = []
        segs: list[float] = []
        chunks = 0
        for i, s in enumerate(ladder):
            dead = bool(vals) and vals[-1] is None
            b = None if dead else bpb(cfg, seed, s)
            if not dead:  # the recorder trains this segment (and stops inside it when it diverges)
                chunks += -(-(s - (ladder[i - 1] if i else 0)) // chunk)
            vals.append(b)
            segs.append(0.0 if dead else float(segment_s(cfg, seed, i)))
        rows.append({"config_id": cfg.config_id, "config": cfg.to_dict(), "family": cfg.family,
                     "stratum": stratum(cfg), "seed": seed, "seed_role": role,
                     "status": "diverged" if None in vals else "ok", "ladder": list(ladder), "val_bpb": vals,
                     "segment_s": segs, "eval_s": [float(eval_s) if b is not None else 0.0 for b in vals],
                     "train_bits": [1.0] * chunks, "chunk": chunk, "shape": shape_key(cfg), "sha": "0" * 40,
                     "dirty": False, "ts": "synthetic"})
    manifest = {"preset": preset, "rungs": list(rungs), "ladder": list(ladder), "seeds": {"primary": primary_seed},
                "compile_s": {k: {"train_s": v, "eval_s": 0.0} for k, v in compile_s.items()}, "batch": batch,
                "context": context}
    return rows, manifest


def synthetic_table(runs: Sequence[tuple[Config, int, str]], *, name: str = "synthetic", **kw: Any) -> ReplayTable:
    """A ReplayTable from `synthetic_rows(runs, **kw)` (in memory, sha256 all zeros)."""
    rows, manifest = synthetic_rows(runs, **kw)
    return ReplayTable.from_rows(rows, manifest, name=name, sha256="0" * 64)
