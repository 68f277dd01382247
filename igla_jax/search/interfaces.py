"""How accelerators plug into the race: four small roles (sampler, filter, pruner, allocator) and the defaults.

Every role has one shape, optax-style: a role object closes over its hyperparameters; `init(...)`
returns its state, a frozen value carried inside the race state (`sampler_state`, `filter_state`,
`pruner_state`, `allocator_state`); and its decision is a pure function of (state, race state, ...)
returning the new state, the decision and the role's current verdict (None: unchanged):

    sampler.propose(state, race, family, n)      -> Proposal(state, configs, verdict)
    filter.keep(state, configs, scores)          -> FilterDecision(state, keep, verdict)
    pruner.judge(state, race, trial)             -> PruneDecision(state, judgement, verdict)
    allocator.next_family(state, race, available)-> Allocation(state, family, verdict)

The race records every verdict it is given in `RaceState.verdicts` (and so in the summary,
race.json and the report); a pruner's verdict also goes on each of its prune rows. A trial's
learning curve (the per-chunk training bits of every rung and each rung's validation BPB) is in
`Trial.results`, so a pruner or sampler sees what the ledger recorded: a resumed or replayed race
sees exactly what the live one saw. Only a filter's `score` computes (in the executor). The race
core imports no accelerator; the caller (the CLI) passes them in. Defaults: `RandomSampler` over
the search space, no filter, no pruner, `RoundRobin` over families.
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Protocol, Sequence, runtime_checkable

import numpy as np

from igla_jax.evidence.verdict import Verdict
from igla_jax.search.search_space import DEFAULT_SPACE, Config, SearchSpace

if TYPE_CHECKING:  # the race state type, only for hints (avoids an import cycle)
    from igla_jax.search.race import RaceState, Trial


@dataclasses.dataclass(frozen=True)
class Proposal:
    """What a sampler returns: its new state, the configs, and optionally its current verdict."""
    state: Any
    configs: tuple[Config, ...]
    verdict: Verdict | None = None
    # verdicts of samplers this one wraps, as (name, verdict) pairs, recorded beside its own
    extra_verdicts: tuple[tuple[str, Verdict | None], ...] = ()


@dataclasses.dataclass(frozen=True)
class Judgement:
    """A pruner's decision on one trial, with the score that decided it (and its interval, if any)."""
    prune: bool
    score: float
    reason: str
    interval: tuple[float, float] | None = None


@dataclasses.dataclass(frozen=True)
class PruneDecision:
    """What a pruner returns: its new state, the judgement, and optionally its current verdict."""
    state: Any
    judgement: Judgement
    verdict: Verdict | None = None


@dataclasses.dataclass(frozen=True)
class FilterDecision:
    """What a filter's `keep` returns: its new state, one keep flag per candidate, its verdict."""
    state: Any
    keep: tuple[bool, ...]
    verdict: Verdict | None = None


@dataclasses.dataclass(frozen=True)
class Allocation:
    """What an allocator returns: its new state, the family chosen, and optionally its verdict."""
    state: Any
    family: str
    verdict: Verdict | None = None


@runtime_checkable
class Sampler(Protocol):
    """Proposes new configs of one family; never re-proposes a config id in race.seen_ids."""
    name: str

    def init(self, seed: int) -> Any: ...

    def propose(self, state: Any, race: "RaceState", family: str, n: int) -> Proposal: ...


@runtime_checkable
class Filter(Protocol):
    """Pre-rung filter (V2): `score` runs in the executor (it may compute), `keep` is pure in the race."""
    name: str
    verdict: Verdict  # the study's verdict; a filter whose verdict is disabled is never consulted

    def init(self, seed: int) -> Any: ...

    def score(self, configs: Sequence[Config]) -> tuple[float, ...]: ...  # higher is better

    def keep(self, state: Any, configs: Sequence[Config], scores: Sequence[float]) -> FilterDecision: ...


@runtime_checkable
class Pruner(Protocol):
    """Vetoes a promotion (V4): judged on its state, the race state and the trial about to be promoted.

    Consulted for every promotion; it must never prune the trial that is best at its rung.
    """
    name: str

    def init(self, seed: int) -> Any: ...

    def judge(self, state: Any, race: "RaceState", trial: "Trial") -> PruneDecision: ...


@runtime_checkable
class Allocator(Protocol):
    """Chooses the family of the next new trial (V6), among the families not yet exhausted.

    `next_family` must return one of `available` (the race raises RaceError otherwise; it never
    substitutes another family). `credit` is told the family of every trial that actually starts,
    including those started from the filter's queue, so counts kept there reflect what ran.
    """
    name: str

    def init(self, families: tuple[str, ...]) -> Any: ...

    def next_family(self, state: Any, race: "RaceState", available: tuple[str, ...]) -> Allocation: ...

    def credit(self, state: Any, family: str) -> Any: ...


@dataclasses.dataclass(frozen=True)
class DrawState:
    """Sampler state: the seed and how many proposals were made so far."""
    seed: int
    draws: int = 0


def draw_fresh(rng: np.random.Generator, pick, seen: frozenset[str], n: int,
               tries: int) -> tuple[Config, ...]:
    """Up to n configs from `pick(rng)` whose ids are not in `seen` (nor repeated), in `tries` draws."""
    out: list[Config] = []
    ids = set(seen)
    for _ in range(tries):
        if len(out) == n:
            break
        cfg = pick(rng)
        if cfg.config_id not in ids:
            ids.add(cfg.config_id)
            out.append(cfg)
    return tuple(out)


def draw_fresh_at(rng: np.random.Generator, size: int, at, seen: frozenset[str], n: int,
                  tries: int) -> tuple[Config, ...]:
    """`draw_fresh(rng, lambda r: at(int(r.integers(size))), seen, n, tries)`, the same configs, with the integers
    drawn a block at a time: numpy's bounded integers come off the generator's stream one after another, so a
    block holds the draws one-at-a-time calls would make (tests/test_race.py checks it); the generator is the
    caller's own for this proposal, so what a block draws past the last one used is never read."""
    out: list[Config] = []
    ids: set[str] = set()
    used, block = 0, 16
    while used < tries and len(out) < n:
        draws = rng.integers(size, size=min(block, tries - used)).tolist()
        block *= 2
        for i in draws:
            used += 1
            cfg = at(i)
            cid = cfg.config_id
            if cid not in seen and cid not in ids:
                ids.add(cid)
                out.append(cfg)
                if len(out) == n:
                    break
    return tuple(out)


@dataclasses.dataclass(frozen=True)
class RandomSampler:
    """Uniform over the full 3^7 grid of the family, without repeating a config of the race."""
    space: SearchSpace = DEFAULT_SPACE
    name: str = "random"

    def init(self, seed: int) -> DrawState:
        return DrawState(seed=int(seed))

    def propose(self, state: DrawState, race: "RaceState", family: str, n: int) -> Proposal:
        rng = np.random.default_rng([state.seed, state.draws])
        size = self.space.size(family)
        seen = frozenset(race.seen_ids)
        configs = draw_fresh_at(rng, size, lambda i: self.space.config_at(family, i), seen, n, tries=20 * size)
        return Proposal(dataclasses.replace(state, draws=state.draws + 1), configs)


@dataclasses.dataclass(frozen=True)
class RoundRobin:
    """Families in turn (attn, jepa, hybrid, attn, ...), skipping exhausted ones; state is the cursor."""
    name: str = "round_robin"

    def init(self, families: tuple[str, ...]) -> int:
        return 0

    def next_family(self, state: int, race: "RaceState", available: tuple[str, ...]) -> Allocation:
        fams = race.config.families
        for k in range(len(fams)):
            fam = fams[(state + k) % len(fams)]
            if fam in available:
                return Allocation(state + k + 1, fam)
        raise ValueError(f"round_robin: none of {fams} is available ({available})")

    def credit(self, state: int, family: str) -> int:
        return state  # the cursor moves when it chooses; nothing is counted
