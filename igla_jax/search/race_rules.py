"""The race's pure helpers: ASHA's promotion rule, every rung's results in one pass, and updates of the frozen state.

`igla_jax.search.race` is the transition function; these are the pieces it reads the state with
(`promotable`, `promotion_cutoff`, `rung_index`) and writes it with (`with_trial`, `with_new_trial`,
`with_statuses`, `emit`), each a function of its arguments only. The rung index (`RungIndex`: every
rung's results and its waiting trials, sorted) is a function of the trials; each write hands the next
state the index of its new trials, updated by the trials it changed (`reindexed`), so a promotion reads
a cutoff and the best waiting trial without a scan. A state whose index was made for another trials
tuple (one built by hand, say) is read through an index rebuilt from its trials: the same decisions.
"""
from __future__ import annotations

import bisect
import math
from typing import Any, Callable, Sequence

from igla_jax.evidence.verdict import Verdict
from igla_jax.search.frozen import evolve
from igla_jax.search.race_types import (Confirm, RaceError, RaceState, Reproduce, RungIndex, RungResult, Score, Train,
                                        Trial, trial_index)


def promotable(rung_results: Sequence[float], bpb: float, eta: int) -> bool:
    """True when fewer than max(1, n // eta) of the n results at the rung are strictly better.

    rung_results holds every result recorded at the rung, including this one (diverged = +inf);
    so the best result at a rung is always promotable and a non-finite one never is.
    """
    if not math.isfinite(bpb):
        return False
    better = sum(1 for r in rung_results if r < bpb)
    return better < max(1, len(rung_results) // eta)


def promotion_cutoff(rung_results: Sequence[float], eta: int) -> float:
    """The m-th smallest result at a rung, m = max(1, n // eta): one sort per rung instead of a scan per trial.

    Fewer than m results lie strictly below x exactly when the m-th smallest is >= x, so for finite x
    promotable(rung_results, x, eta) == (x <= cutoff); a non-finite x is never promotable.
    """
    return sorted(rung_results)[max(1, len(rung_results) // eta) - 1] if rung_results else -math.inf


def finite_at_most(x: float, cut: float) -> bool:
    return math.isfinite(x) and x <= cut


def bpb_or_inf(r: RungResult) -> float:
    return math.inf if r.bpb is None else r.bpb


def set_verdict(verdicts: tuple, name: str, v: Verdict | None) -> tuple:
    if v is None:
        return verdicts
    return tuple((n, x) for n, x in verdicts if n != name) + ((name, v),)


def ckpt(trial_id: str, step: int) -> str:
    """Logical checkpoint name; the executor resolves it under --out/ckpt."""
    return f"{trial_id}/step_{step}"


# ---------------------------------------------------------------- the rung index: rebuilt from the trials, or kept with them
def index_of(trials: tuple[Trial, ...], n_rungs: int) -> RungIndex:
    """The rung index of `trials` (see `RungIndex`), from scratch."""
    at: list[list[float]] = [[] for _ in range(n_rungs)]
    waiting: list[list[tuple[float, str]]] = [[] for _ in range(n_rungs)]
    for t in trials:
        for k, r in enumerate(t.results[:n_rungs]):
            at[k].append(bpb_or_inf(r))
        w = _waiting_entry(t, n_rungs)
        if w is not None:
            waiting[len(t.results) - 1].append(w)
    return RungIndex(trials, tuple(tuple(sorted(x)) for x in at), tuple(tuple(sorted(x)) for x in waiting))


def rung_index(state: RaceState) -> RungIndex:
    """The state's rung index: the one it carries when that describes its very trials tuple, else rebuilt."""
    idx = state.ladder
    if idx is None or idx.of is not state.trials or len(idx.at) != len(state.config.rungs):
        idx = index_of(state.trials, len(state.config.rungs))
    return idx


def _waiting_entry(t: Trial, n_rungs: int) -> tuple[float, str] | None:
    n = len(t.results)
    return (bpb_or_inf(t.results[n - 1]), t.trial_id) if t.status == "waiting" and 0 < n <= n_rungs else None


def _insert(xs: tuple, x: Any) -> tuple:
    i = bisect.bisect_left(xs, x)
    return xs[:i] + (x,) + xs[i:]


def _remove(xs: tuple, x: Any) -> tuple:
    i = bisect.bisect_left(xs, x)
    if i == len(xs) or xs[i] != x:
        raise RaceError(f"rung index: {x!r} is not in it (a trial changed outside race_rules)")
    return xs[:i] + xs[i + 1:]


def reindexed(idx: RungIndex, changes: Sequence[tuple[Trial | None, Trial | None]], of: tuple[Trial, ...]
              ) -> RungIndex:
    """The index of `of`: `idx` with each (old, new) trial swapped (None: not there), as index_of(of) would be."""
    at, waiting, n = list(idx.at), list(idx.waiting), len(idx.at)
    for old, new in changes:
        ro, rn = (old.results if old is not None else ()), (new.results if new is not None else ())
        for k in range(min(n, max(len(ro), len(rn)))):
            a = bpb_or_inf(ro[k]) if k < len(ro) else None
            b = bpb_or_inf(rn[k]) if k < len(rn) else None
            if a is not None and b is not None and a == b:
                continue
            if a is not None:
                at[k] = _remove(at[k], a)
            if b is not None:
                at[k] = _insert(at[k], b)
        wo = _waiting_entry(old, n) if old is not None else None
        wn = _waiting_entry(new, n) if new is not None else None
        if wo != wn or (wo is not None and len(ro) != len(rn)):   # the same entry at another rung moves too
            if wo is not None:
                waiting[len(ro) - 1] = _remove(waiting[len(ro) - 1], wo)
            if wn is not None:
                waiting[len(rn) - 1] = _insert(waiting[len(rn) - 1], wn)
    return RungIndex(of, tuple(at), tuple(waiting))


def with_trial(state: RaceState, tid: str, fn: Callable[[Trial], Trial]) -> RaceState:
    """The state with trial `tid` replaced by fn(trial) (unchanged when there is no such trial)."""
    i = trial_index(state.trials, tid)
    if i is None:
        return state
    ts = state.trials
    old, new = ts[i], fn(ts[i])
    trials = ts[:i] + (new,) + ts[i + 1:]
    return evolve(state, trials=trials, ladder=reindexed(rung_index(state), [(old, new)], trials))


def with_new_trial(state: RaceState, trial: Trial) -> RaceState:
    """The state with `trial` appended to its trials."""
    trials = state.trials + (trial,)
    return evolve(state, trials=trials, ladder=reindexed(rung_index(state), [(None, trial)], trials))


def with_statuses(state: RaceState, status: str, tids: frozenset[str]) -> RaceState:
    """The state with every trial of `tids` given `status`, in one pass."""
    if not tids:
        return state
    changes = [(t, evolve(t, status=status)) for t in state.trials if t.trial_id in tids]
    new = dict(zip((o.trial_id for o, _ in changes), (n for _, n in changes)))
    trials = tuple(new.get(t.trial_id, t) for t in state.trials)
    return evolve(state, trials=trials, ladder=reindexed(rung_index(state), changes, trials))


def emit(state: RaceState, make: Callable[[int], Any], *, track: bool | None = None) -> tuple[RaceState, Any]:
    """Numbers a new action; Train/Score/Confirm/Reproduce stay outstanding until their event."""
    act = make(state.next_action_id)
    keep = isinstance(act, (Train, Score, Confirm, Reproduce)) if track is None else track
    return evolve(state, next_action_id=state.next_action_id + 1,
                  outstanding=state.outstanding + ((act,) if keep else ())), act
