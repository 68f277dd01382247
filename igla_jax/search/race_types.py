"""The race's frozen values: configuration, state, events (executor -> race) and actions (race -> executor)."""
from __future__ import annotations

import dataclasses
import hashlib
import math
from typing import Any, Union

from igla_jax.evidence.verdict import Verdict
from igla_jax.search.frozen import evolve
from igla_jax.search.search_space import Config
from igla_jax.training.models.config import FAMILIES


class RaceError(RuntimeError):
    """An event does not fit the race state (a replay mismatch or an executor bug)."""


def derive_search_seed(seed: int, victory_seeds: tuple[int, ...]) -> int:
    """The training seed of every search trial of a race with `--seed seed`: never a victory seed.

    A pure function of the race seed (sha256 of "igla-search-seed:<seed>", 31 bits), stepped past
    any victory seed, so the runs that victory counts are always fresh seeds nothing selected on.
    """
    h = int(hashlib.sha256(f"igla-search-seed:{int(seed)}".encode()).hexdigest()[:8], 16) & 0x7FFFFFFF
    while h in victory_seeds:
        h = (h + 1) & 0x7FFFFFFF
    return h


@dataclasses.dataclass(frozen=True)
class RaceConfig:
    """Everything the pure race needs; rungs/eta/seeds/tolerance come from the preregistration.

    `seed` drives the race's own randomness (sampling, tie-breaks); every search trial trains on
    `search_seed` (derived from `seed` unless given), which is never a victory seed.

    Size: `budget_s` (seconds of race time: wall time live, simulated time in a replay; time reaches
    the race only through the `elapsed_s` its events carry) and/or `max_trials` (trials started);
    at least one of them. With a budget the race keeps starting trials until what is left is what
    the work in flight and the champion's confirmation need (`reserve_margin` x the champion's
    measured path cost, per victory seed and the reproduce run); without confirmation (a replay)
    it starts trials until the budget is spent and ends at the first result past it.
    """
    rungs: tuple[int, ...]
    eta: int
    seed: int
    max_trials: int | None
    victory_seeds: tuple[int, ...]
    reproduce_tol: float
    families: tuple[str, ...] = FAMILIES
    workers: int = 1          # Train actions outstanding at once (population batching)
    score_pool: int = 10      # candidates per filter Score action (prereg filter_score_pool in the race CLI)
    confirm: bool = True      # confirm on every victory seed + reproduce the champion after the last rung
    search_seed: int | None = None
    budget_s: float | None = None   # the race's size in seconds of race time (None: sized by max_trials)
    reserve_margin: float = 1.0     # prereg confirm_reserve_margin in the race CLI

    def __post_init__(self) -> None:
        r = tuple(int(x) for x in self.rungs)
        if not r or any(x < 1 for x in r) or list(r) != sorted(set(r)):
            raise ValueError(f"RaceConfig.rungs={self.rungs!r}: need strictly increasing positive steps")
        object.__setattr__(self, "rungs", r)
        object.__setattr__(self, "victory_seeds", tuple(int(s) for s in self.victory_seeds))
        object.__setattr__(self, "families", tuple(self.families))
        if self.eta < 2:
            raise ValueError(f"RaceConfig.eta={self.eta!r}: must be >= 2")
        if self.max_trials is None and self.budget_s is None:
            raise ValueError("RaceConfig: give max_trials or budget_s (a race needs a size)")
        if self.budget_s is not None and not (math.isfinite(self.budget_s) and self.budget_s > 0):
            raise ValueError(f"RaceConfig.budget_s={self.budget_s!r}: must be a positive number of seconds")
        if not (math.isfinite(self.reserve_margin) and self.reserve_margin >= 1.0):
            raise ValueError(f"RaceConfig.reserve_margin={self.reserve_margin!r}: must be >= 1")
        for f in ("max_trials", "workers", "score_pool"):
            if getattr(self, f) is not None and getattr(self, f) < 1:
                raise ValueError(f"RaceConfig.{f}={getattr(self, f)!r}: must be >= 1")
        bad = [f for f in self.families if f not in FAMILIES]
        if bad or not self.families or len(set(self.families)) != len(self.families):
            raise ValueError(f"RaceConfig.families={self.families!r}: distinct names from {FAMILIES}")
        if not self.reproduce_tol >= 0:
            raise ValueError(f"RaceConfig.reproduce_tol={self.reproduce_tol!r}: must be >= 0")
        if self.search_seed is None:
            object.__setattr__(self, "search_seed", derive_search_seed(self.seed, self.victory_seeds))
        elif int(self.search_seed) in self.victory_seeds:
            raise ValueError(f"RaceConfig.search_seed={self.search_seed!r}: must not be a victory seed "
                             f"{list(self.victory_seeds)} (selection and confirmation must not share noise)")


@dataclasses.dataclass(frozen=True)
class Counters:
    """Race-wide tallies (the budget counters): events seen, trials started, pruned, diverged, steps, cost."""
    events: int = 0
    started: int = 0
    pruned: int = 0
    diverged: int = 0
    steps: int = 0
    cost_s: float = 0.0

    def add(self, **kw: Any) -> "Counters":
        return evolve(self, **{k: getattr(self, k) + v for k, v in kw.items()})


@dataclasses.dataclass(frozen=True)
class RungResult:
    """A trial's measurement at one rung; bpb None means it diverged."""
    rung: int
    step: int
    bpb: float | None
    cost_s: float
    train_curve: tuple[float | None, ...] = ()  # mean training bits of each chunk trained for this rung


@dataclasses.dataclass(frozen=True)
class Trial:
    """One config on one seed climbing the rungs; status in running/waiting/done/diverged/pruned."""
    trial_id: str
    config: Config
    seed: int
    status: str
    results: tuple[RungResult, ...] = ()

    @property
    def rung(self) -> int:
        """Highest rung index completed (-1 before the first)."""
        return len(self.results) - 1

    @property
    def curve(self) -> tuple[float | None, ...]:
        """The trial's whole training curve so far: mean training bits of every chunk, rung after rung."""
        return tuple(b for r in self.results for b in r.train_curve)


@dataclasses.dataclass(frozen=True)
class SeedRun:
    """A from-scratch run of the champion: kind confirm (a victory seed, also scored on test) or
    reproduce (its own search seed, validation only: evidence, never counted)."""
    kind: str
    seed: int
    step: int
    bpb: float | None
    cost_s: float
    status: str
    test_bpb: float | None = None


# ---------------------------------------------------------------- events (executor -> race)
@dataclasses.dataclass(frozen=True)
class Start:
    pass


@dataclasses.dataclass(frozen=True)
class RungDone:
    action_id: int
    trial_id: str
    rung: int
    step: int
    bpb: float | None
    cost_s: float
    status: str  # "ok" | "diverged"
    train_curve: tuple[float | None, ...] = ()  # mean training bits per chunk of this action (ledger: extra.train_curve)
    elapsed_s: float | None = None  # race time when the result arrived (ledger: extra.elapsed_s; None in old ledgers)


@dataclasses.dataclass(frozen=True)
class Scored:
    action_id: int
    scores: tuple[float, ...]


@dataclasses.dataclass(frozen=True)
class BudgetExhausted:
    reason: str = "wall-clock budget"


@dataclasses.dataclass(frozen=True)
class ConfirmDone:
    action_id: int
    seed: int
    step: int
    bpb: float | None
    cost_s: float
    status: str
    test_bpb: float | None = None   # the race records it; no decision of the race reads it
    elapsed_s: float | None = None


@dataclasses.dataclass(frozen=True)
class ReproduceDone:
    action_id: int
    seed: int
    step: int
    bpb: float | None
    cost_s: float
    status: str
    elapsed_s: float | None = None


Event = Union[Start, RungDone, Scored, BudgetExhausted, ConfirmDone, ReproduceDone]


# ---------------------------------------------------------------- actions (race -> executor)
@dataclasses.dataclass(frozen=True)
class Train:
    """Train trial_id from from_step (from_checkpoint, or scratch when None) to to_step, then evaluate."""
    action_id: int
    trial_id: str
    config: Config
    seed: int
    rung: int
    from_step: int
    to_step: int
    total_steps: int              # lr-schedule horizon: the final rung, so continuing == one long run
    from_checkpoint: str | None   # logical name "<trial>/step_<n>"
    save_checkpoint: str | None
    promoted_by: str | None       # "asha" when this continues a promoted trial
    promoted_score: float | None  # the rung bpb that earned the promotion


@dataclasses.dataclass(frozen=True)
class Prune:
    """Stop trial_id (or drop a candidate config when trial_id is ''), with who decided and the score."""
    action_id: int
    trial_id: str
    config: Config
    seed: int
    step: int
    bpb: float | None
    reason: str
    decided_by: str
    score: float
    interval: tuple[float, float] | None = None   # the pruner's prediction interval for `score`, when it has one
    verdict: str | None = None                      # the deciding role's verdict line when it decided


@dataclasses.dataclass(frozen=True)
class Confirm:
    """Train config from scratch on a victory seed to to_step; measure validation and test BPB. The lr schedule's
    horizon is the search trials' (total_steps, the final rung), so a champion from a lower rung is confirmed
    by the recipe it was selected with; None (older rows) means to_step."""
    action_id: int
    config: Config
    seed: int
    to_step: int
    total_steps: int | None = None


@dataclasses.dataclass(frozen=True)
class Reproduce:
    """The champion re-run from scratch on its own search seed to to_step, with the search horizon total_steps."""
    action_id: int
    config: Config
    seed: int
    to_step: int
    original_bpb: float
    total_steps: int | None = None


@dataclasses.dataclass(frozen=True)
class Score:
    action_id: int
    family: str
    candidates: tuple[Config, ...]


@dataclasses.dataclass(frozen=True)
class RaceSummary:
    """What the race knows at the end (or now): champion, its seed runs, tallies, verdicts."""
    phase: str
    stopped_by: str | None
    champion: str | None
    champion_config: Config | None
    champion_bpb: float | None
    champion_step: int | None
    seed_runs: tuple[SeedRun, ...]
    reproduced: bool | None
    counters: Counters
    occupancy: tuple[int, ...]   # trials whose highest completed rung is k
    running: tuple[int, ...]     # Train actions outstanding per rung
    verdicts: tuple[tuple[str, Verdict], ...]
    champion_rung: int | None = None     # rung index (0-based) the champion reached: the highest any trial reached
    elapsed_s: float = 0.0               # race time of the last event
    budget_s: float | None = None
    reserve_s: float | None = None       # what the champion's confirmation is estimated to need now (budget races)


@dataclasses.dataclass(frozen=True)
class Finish:
    action_id: int
    summary: RaceSummary


Action = Union[Train, Prune, Confirm, Reproduce, Score, Finish]


@dataclasses.dataclass(frozen=True)
class RungIndex:
    """Every rung's results, sorted (diverged = +inf), and the trials waiting at each rung as sorted (bpb, trial id):
    a function of `of`, the trials tuple it was made for (igla_jax.search.race_rules keeps it)."""
    of: tuple[Trial, ...]
    at: tuple[tuple[float, ...], ...]
    waiting: tuple[tuple[tuple[float, str], ...], ...]


@dataclasses.dataclass(frozen=True)
class RaceState:
    """The whole search state; rung membership, counters and plugin states all live here."""
    config: RaceConfig
    phase: str                         # init | asha | confirm | finished
    trials: tuple[Trial, ...]
    outstanding: tuple[Action, ...]    # actions awaiting their event
    queue: tuple[Config, ...]          # filter-kept configs waiting for a worker
    seen_ids: frozenset[str]           # every config id ever proposed (never re-proposed)
    exhausted: tuple[str, ...]         # families the sampler has nothing left for
    next_action_id: int
    counters: Counters
    sampler_state: Any
    allocator_state: Any
    verdicts: tuple[tuple[str, Verdict], ...]
    champion: str | None
    seed_runs: tuple[SeedRun, ...]
    stopped_by: str | None
    pruner_state: Any = None
    filter_state: Any = None
    elapsed_s: float = 0.0             # race time of the latest event that carried one
    # what promotions read, derived from `trials` and kept with them (igla_jax.search.race_rules.rung_index):
    # used only while it describes this very trials tuple, rebuilt otherwise; not part of the state's value
    ladder: "RungIndex | None" = dataclasses.field(default=None, compare=False, repr=False)

    def trial(self, trial_id: str) -> Trial:
        i = trial_index(self.trials, trial_id)
        if i is None:
            raise KeyError(trial_id)
        return self.trials[i]


def trial_index(trials: tuple[Trial, ...], trial_id: str) -> int | None:
    """Where the trial is in `trials` (None: not there). The race starts trial t<n> as its n-th, so that place is
    tried first; any other order is scanned."""
    n = trial_id[1:]
    if trial_id[:1] == "t" and n.isdigit() and int(n) < len(trials) and trials[int(n)].trial_id == trial_id:
        return int(n)
    return next((i for i, t in enumerate(trials) if t.trial_id == trial_id), None)
