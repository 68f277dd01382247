"""The configs a race would start next, drawn on a copy of its state: what an executor may compile ahead.

`upcoming(race, state, n)` asks the race's own allocator and sampler for the next `n` new trials'
configs exactly as `Race._fill` would if slots freed now, and throws the resulting states away:
nothing is committed, so a race that looks ahead makes the decisions of one that does not (the
state is immutable; the roles are pure). The guess can be wrong (a result that arrives first can
move a model-based sampler, or promote instead of start); a wrong guess only costs a compile.
"""
from __future__ import annotations

from typing import Any

from igla_jax.search.race_types import RaceState
from igla_jax.search.search_space import Config


def upcoming(race: Any, state: RaceState, n: int) -> tuple[Config, ...]:
    """Up to n configs of the trials the race would start next (queued ones first); () once it cannot start any."""
    if state.phase != "asha" or n < 1 or not race._can_start(state):
        return ()
    c = state.config
    if c.max_trials is not None:
        n = min(n, c.max_trials - state.counters.started)
    out = list(state.queue[:n])
    if race._filter_on():   # a filter's candidates start only once it has scored them: only the queue is known
        return tuple(out)
    s = state
    for _ in range(2 * n * len(c.families)):   # a family that runs out is skipped, as _fill does
        if len(out) >= n or len(s.exhausted) >= len(c.families):
            break
        s, family = race._pick_family(s)
        s, configs = race._propose(s, family, 1)
        out.extend(configs)
    return tuple(out[:n])
