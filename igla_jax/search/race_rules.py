"""The race's pure helpers: ASHA's promotion rule, every rung's results in one pass, and updates of the frozen state.

`igla_jax.search.race` is the transition function; these are the pieces it reads the state with
(`promotable`, `promotion_cutoff`, `rung_results`, `waiting_at`) and writes it with (`with_trial`, `with_statuses`,
`emit`), each a function of its arguments only.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence

from igla_jax.evidence.verdict import Verdict
from igla_jax.search.frozen import evolve
from igla_jax.search.race_types import Confirm, RaceState, Reproduce, RungResult, Score, Train, Trial, trial_index


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


def rung_results(trials: Sequence[Trial], n_rungs: int) -> list[list[float]]:
    """Every result at rung k (diverged = +inf), in trial order, for k < n_rungs: a pass per rung over the trials
    that reached the one below."""
    inf, at, live = math.inf, [], trials
    for k in range(n_rungs):
        live = [t for t in live if len(t.results) > k]
        at.append([inf if (b := t.results[k].bpb) is None else b for t in live])
    return at


def waiting_at(trials: Sequence[Trial], k: int) -> list[tuple[float | None, str, Trial]]:
    """(bpb at rung k, trial id, trial) of every trial waiting there (status "waiting", exactly k + 1 results)."""
    return [(t.results[k].bpb, t.trial_id, t) for t in trials if t.status == "waiting" and len(t.results) == k + 1]


def set_verdict(verdicts: tuple, name: str, v: Verdict | None) -> tuple:
    if v is None:
        return verdicts
    return tuple((n, x) for n, x in verdicts if n != name) + ((name, v),)


def ckpt(trial_id: str, step: int) -> str:
    """Logical checkpoint name; the executor resolves it under --out/ckpt."""
    return f"{trial_id}/step_{step}"


def with_trial(state: RaceState, tid: str, fn: Callable[[Trial], Trial]) -> RaceState:
    """The state with trial `tid` replaced by fn(trial) (unchanged when there is no such trial)."""
    i = trial_index(state.trials, tid)
    if i is None:
        return state
    ts = state.trials
    return evolve(state, trials=ts[:i] + (fn(ts[i]),) + ts[i + 1:])


def with_statuses(state: RaceState, status: str, tids: frozenset[str]) -> RaceState:
    """The state with every trial of `tids` given `status`, in one pass."""
    if not tids:
        return state
    return evolve(state, trials=tuple(evolve(t, status=status) if t.trial_id in tids else t for t in state.trials))


def emit(state: RaceState, make: Callable[[int], Any], *, track: bool | None = None) -> tuple[RaceState, Any]:
    """Numbers a new action; Train/Score/Confirm/Reproduce stay outstanding until their event."""
    act = make(state.next_action_id)
    keep = isinstance(act, (Train, Score, Confirm, Reproduce)) if track is None else track
    return evolve(state, next_action_id=state.next_action_id + 1,
                  outstanding=state.outstanding + ((act,) if keep else ())), act
