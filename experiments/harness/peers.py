"""The field's tools replayed on our recorded curve table and simulated clock (the `compare` extra).

Each peer is a method `(table, repeat, workers, budget_s) -> Trajectory` for the hypothesis harness
(`PEERS`), deterministic in `repeat` (the tool is seeded with it) and importing its tool lazily, so a
missing package fails that method only, with the `pip install -e '.[compare]'` line.

Shared by every peer, so the comparison is the tools' decisions and nothing else:
- Space: the table's primary-seed configs of the uniform stratum (what our baselines draw from),
  shown to the tool as `family` (categorical) plus the 7 levers as ordinal indices 0..k-1 into the
  lever's sorted values (index order is value order; lr's grid is geometric, so index = log scale).
- Mapping (identical for every tool): a new config of the tool (its own identity: an Optuna trial,
  an HpBandSter config_id, a SMAC Configuration, a Syne Tune trial_id) becomes the nearest recorded
  config of its family that this run has not assigned yet, by L1 distance of lever indices, ties to
  table order; another family only when the proposed one has none left. The same tool config
  evaluated again (a promotion, a higher Hyperband budget) keeps its recorded config. The tool is
  told the recorded config's BPB for its own proposal. Once every recorded config is assigned, a
  new tool config gets the nearest recorded config, assigned or not: a fresh run, charged again
  (so a long budget is spent, never cut short; the tool's repeats are its own cost).
- Cost: the recorded training seconds of the ladder segments an evaluation covers, plus one
  evaluation at its step, plus the shape's compile seconds once per (worker, shape): exactly
  `igla_jax.execution.replay.ReplayBackend`. A tool that continues a run is charged from where it stopped;
  a tool that restarts a config from scratch at a higher budget (Hyperband in HpBandSter and SMAC)
  is charged from step 0, its real cost. The tools' own thinking time is free (as in our replays).
- Observations: BPB at the rung steps (table rungs, e.g. 100/300/900/2700); a run that diverged is
  told DIVERGED_BPB (8.0: a uniform model) as an ordinary result and is never continued.
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import importlib
import itertools
import logging
import math
import warnings
from typing import Any, Callable, Hashable, Iterator, Mapping

import numpy as np

from experiments.harness.trajectory import Trajectory
from igla_jax.evidence.prereg import UNIFORM_BPB
from igla_jax.execution.replay import ReplayBackend, ReplayTable
from igla_jax.search.race_types import Train
from igla_jax.search.search_space import LEVER_FIELDS, Config
from igla_jax.training.models.config import FAMILIES


DIVERGED_BPB = UNIFORM_BPB
INSTALL = "pip install -e '.[compare]'"


class PeerError(ValueError):
    """A table or argument a peer cannot run on (no uniform configs, rungs not geometric, workers < 1, ...)."""


class PeerUnavailable(ImportError):
    """A peer's tool package is not installed; the message says how to install it."""


# ---------------------------------------------------------------- the space every tool sees
@dataclasses.dataclass(frozen=True)
class PeerSpace:
    """The uniform stratum's recorded configs and their encoding as family + 7 lever indices."""
    configs: tuple[Config, ...]                         # table order
    families: tuple[str, ...]
    values: tuple[tuple[str, tuple[tuple[Any, ...], ...]], ...]   # family -> sorted values of each lever
    n_levels: tuple[int, ...]                           # per lever, the most levels of any family
    rungs: tuple[int, ...]
    eta: int

    def lever_values(self, family: str) -> tuple[tuple[Any, ...], ...]:
        return dict(self.values)[family]

    def index_of(self, cfg: Config) -> tuple[int, ...]:
        vals = self.lever_values(cfg.family)
        return tuple(v.index(getattr(cfg, f)) for f, v in zip(LEVER_FIELDS, vals))


def peer_space(table: ReplayTable) -> PeerSpace:
    """The space of `table` (see the module docstring); rungs must be r0 * eta^k."""
    cfgs = [table.runs[k].config for k in table.order
            if table.runs[k].seed_role == "primary" and table.runs[k].stratum == "uniform"]
    if not cfgs:
        raise PeerError(f"{table.name}: no primary-seed configs of the uniform stratum; the peers search only those")
    rungs = tuple(int(r) for r in table.rungs)
    eta = rungs[1] // rungs[0] if len(rungs) > 1 and rungs[0] > 0 else 0
    if eta < 2 or any(r != rungs[0] * eta ** i for i, r in enumerate(rungs)):
        raise PeerError(f"{table.name}: rungs {list(rungs)} are not r0 * eta^k with an integer eta >= 2, which "
                        "Hyperband-style peers need")
    fams = tuple(f for f in FAMILIES if any(c.family == f for c in cfgs))
    values = tuple((f, tuple(tuple(sorted({getattr(c, fld) for c in cfgs if c.family == f})) for fld in LEVER_FIELDS))
                   for f in fams)
    n_levels = tuple(max(len(v[i]) for _, v in values) for i in range(len(LEVER_FIELDS)))
    return PeerSpace(tuple(cfgs), fams, values, n_levels, rungs, eta)


def config_space(space: PeerSpace, seed: int) -> Any:
    """The ConfigSpace of HpBandSter and SMAC: `family` categorical, each lever an integer index 0..k-1."""
    import ConfigSpace as CS
    cs = CS.ConfigurationSpace(seed=int(seed))
    cs.add(CS.CategoricalHyperparameter("family", list(space.families)))
    for f, n in zip(LEVER_FIELDS, space.n_levels):
        cs.add(CS.UniformIntegerHyperparameter(f, 0, max(n - 1, 1)))  # a one-level lever still needs 2 values
    return cs


def decode(config: Mapping[str, Any]) -> tuple[str, tuple[int, ...]]:
    """(family, lever indices) of a tool's config dict."""
    return str(config["family"]), tuple(int(config[f]) for f in LEVER_FIELDS)


class TableMap:
    """The one proposal -> recorded config rule of every peer (module docstring: Mapping)."""

    def __init__(self, space: PeerSpace):
        self.space = space
        self._idx = np.array([space.index_of(c) for c in space.configs], dtype=np.int64)
        self._fam = np.array([space.families.index(c.family) for c in space.configs])
        self._free = np.ones(len(space.configs), dtype=bool)
        self._by_key: dict[Hashable, Config] = {}

    def assign(self, key: Hashable, family: str, levers: tuple[int, ...]) -> Config:
        """The recorded config of tool config `key`: kept if seen, else the nearest unassigned (any, once none is)."""
        if key in self._by_key:
            return self._by_key[key]
        fam = self.space.families.index(family) if family in self.space.families else -1
        dist = np.abs(self._idx - np.asarray(levers, dtype=np.int64)).sum(1) + (self._fam != fam) * 10**6
        if self._free.any():
            dist = np.where(self._free, dist, np.iinfo(np.int64).max)
        i = int(np.argmin(dist))  # the first minimum: ties go to table order
        self._free[i] = False
        self._by_key[key] = self.space.configs[i]
        return self.space.configs[i]


# ---------------------------------------------------------------- the clock and the record
@dataclasses.dataclass(frozen=True)
class Answer:
    """A finished evaluation: the tool's token, when it finished, the step, and the BPB (None: diverged)."""
    token: Any
    t: float
    config: Config
    step: int
    bpb: float | None

    @property
    def told(self) -> float:
        """What the tool is told."""
        return DIVERGED_BPB if self.bpb is None else self.bpb


class PeerClock:
    """ReplayBackend's n simulated workers for ask/tell peers: submit (config, from, to), poll answers in finish order."""

    def __init__(self, table: ReplayTable, workers: int):
        self.table, self.workers = table, int(workers)
        self.backend = ReplayBackend(table, workers=workers)
        self._aid = itertools.count()
        self._tokens: dict[int, Any] = {}
        self._dead: collections.deque[Answer] = collections.deque()

    @property
    def now(self) -> float:
        return self.backend.now

    def in_flight(self) -> int:
        return self.backend.in_flight() + len(self._dead)

    def submit(self, token: Any, cfg: Config, from_step: int, to_step: int) -> None:
        run = self.table.run(cfg, self.table.primary_seed)
        if from_step and run.val_bpb[run.index(from_step, "peer")] is None:
            self._dead.append(Answer(token, self.now, cfg, to_step, None))  # nothing left to train: told at once
            return
        aid = next(self._aid)
        self._tokens[aid] = token
        rung = self.table.rungs.index(to_step) if to_step in self.table.rungs else 0
        self.backend.submit(Train(aid, f"peer-{aid}", cfg, self.table.primary_seed, rung, from_step, to_step,
                                  self.table.rungs[-1], None, None, None, None), self.now)

    def poll(self) -> Answer | None:
        if self._dead:
            return self._dead.popleft()
        f = self.backend.poll()
        if f is None:
            return None
        a = f.action
        bpb = f.result.val_bpb if f.result.status == "ok" else None
        return Answer(self._tokens.pop(a.action_id), f.finish_s, a.config, a.to_step, bpb)


class Recorder:
    """Builds the Trajectory: top-rung completions within the budget and the first promotion past rung 1."""

    def __init__(self, method: str, repeat: int, workers: int, space: PeerSpace, budget_s: float):
        self.method, self.repeat, self.workers, self.budget_s = method, repeat, workers, float(budget_s)
        self.rungs = space.rungs
        self.completions: list[tuple[float, str, float]] = []
        self.first_promotion_s: float | None = None
        self._seen_first: set[str] = set()

    def issued(self, cfg: Config, to_step: int, t: float) -> None:
        """An evaluation past rung 1 of a config already observed at rung 1 is a promotion."""
        if self.first_promotion_s is None and to_step > self.rungs[0] and cfg.config_id in self._seen_first:
            self.first_promotion_s = float(t)

    def observed(self, cfg: Config, step: int, bpb: float | None, t: float) -> None:
        if step == self.rungs[0]:
            self._seen_first.add(cfg.config_id)
        if step == self.rungs[-1] and bpb is not None and t <= self.budget_s:
            self.completions.append((float(t), cfg.config_id, float(bpb)))

    def trajectory(self, sim_end_s: float) -> Trajectory:
        comps = tuple(sorted(self.completions, key=lambda c: c[0]))  # stable: ties keep arrival order
        first = self.first_promotion_s if self.first_promotion_s is not None and \
            self.first_promotion_s <= self.budget_s else None
        return Trajectory(self.method, self.repeat, self.workers, comps, first, (),
                          float(min(sim_end_s, self.budget_s)))


def run_ask_tell(clock: PeerClock, rec: Recorder, *, budget_s: float, next_job: Callable[[], Any],
                 tell: Callable[[Answer], None]) -> Trajectory:
    """The event loop of a pull-style tool: a free worker asks `next_job()` -> (token, config, from, to) or None;
    answers reach `tell` in finish order; stops at the budget or when nothing is left in flight."""
    def fill() -> None:
        while clock.in_flight() < clock.workers and clock.now < budget_s:
            job = next_job()
            if job is None:
                return
            token, cfg, frm, to = job
            rec.issued(cfg, to, clock.now)
            clock.submit(token, cfg, frm, to)

    fill()
    while True:
        ans = clock.poll()
        if ans is None:
            return rec.trajectory(clock.now)
        if ans.t > budget_s:
            return rec.trajectory(budget_s)
        rec.observed(ans.config, ans.step, ans.bpb, ans.t)
        tell(ans)
        fill()


def check_args(repeat: int, workers: int, budget_s: float) -> None:
    """A method's arguments, checked before any tool runs."""
    if isinstance(repeat, bool) or not isinstance(repeat, (int, np.integer)) or repeat < 0:
        raise PeerError(f"repeat={repeat!r}: must be an integer >= 0 (it seeds the tool)")
    if workers < 1:
        raise PeerError(f"workers={workers!r}: must be >= 1")
    if not (budget_s > 0 and math.isfinite(budget_s)):
        raise PeerError(f"budget_s={budget_s!r}: must be a positive number of simulated seconds")


@contextlib.contextmanager
def quiet_seeded(repeat: int, loggers: tuple[str, ...] = ()) -> Iterator[None]:
    """Seeds numpy's global RNG (HpBandSter and Syne Tune draw from it); hushes the tools' warnings and loggers.

    Everything is restored afterwards: the caller's RNG state, warning filters and logger levels.
    """
    state = np.random.get_state()
    levels = {n: logging.getLogger(n).level for n in loggers}
    np.random.seed(int(repeat) & 0xFFFFFFFF)
    try:
        for n in loggers:
            logging.getLogger(n).setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        np.random.set_state(state)
        for n, lvl in levels.items():
            logging.getLogger(n).setLevel(lvl)


def snap_rung(budget: float, space: PeerSpace, tool: str) -> int:
    """The rung a tool's float budget stands for (Hyperband budgets are max * eta^-k in floating point)."""
    r = min(space.rungs, key=lambda x: abs(x - float(budget)))
    if abs(r - float(budget)) > 1e-6 * r:
        raise PeerError(f"{tool} budget {budget!r} is no rung of {list(space.rungs)}")
    return r


# ---------------------------------------------------------------- the registry
_TOOLS: Mapping[str, tuple[str, str, str, dict[str, Any]]] = {
    # method: (module, function, the package it needs, keyword arguments)
    "optuna_tpe_hyperband": ("experiments.harness.peers_optuna", "run_optuna", "optuna", {}),
    "hpbandster_bohb": ("experiments.harness.peers_hpbandster", "run_hpbandster", "hpbandster", {}),
    "smac_hyperband": ("experiments.harness.peers_smac", "run_smac", "smac", {"facade": "hyperband"}),
    "smac_multifidelity": ("experiments.harness.peers_smac", "run_smac", "smac", {"facade": "multifidelity"}),
    "synetune_asha": ("experiments.harness.peers_synetune", "run_synetune", "syne_tune", {"searcher": "asha"}),
    "synetune_bohb": ("experiments.harness.peers_synetune", "run_synetune", "syne_tune", {"searcher": "bohb"}),
    "synetune_asha_cqr": ("experiments.harness.peers_synetune", "run_synetune", "syne_tune", {"searcher": "cqr"}),
    "synetune_asha_bore": ("experiments.harness.peers_synetune", "run_synetune", "syne_tune", {"searcher": "bore"}),
    "dehb": ("experiments.harness.peers_dehb", "run_dehb", "dehb", {}),
}


def _method(name: str) -> Callable[[ReplayTable, int, int, float], Trajectory]:
    module, func, package, kw = _TOOLS[name]

    def method(table: ReplayTable, repeat: int, workers: int, budget_s: float) -> Trajectory:
        try:
            importlib.import_module(package)
        except ImportError as e:
            how = INSTALL + (" && pip install --no-deps dehb==0.1.2" if package == "dehb" else "")
            raise PeerUnavailable(f"method {name!r} needs the package {package!r} ({e}): {how}") from None
        check_args(repeat, workers, budget_s)
        return getattr(importlib.import_module(module), func)(table, int(repeat), int(workers), float(budget_s),
                                                               method=name, **kw)

    method.__name__ = method.__qualname__ = name
    method.__doc__ = f"{name}: {module}.{func}({', '.join(f'{k}={v!r}' for k, v in kw.items())}) on the table's clock."
    return method


PEERS: dict[str, Callable[[ReplayTable, int, int, float], Trajectory]] = {n: _method(n) for n in _TOOLS}
