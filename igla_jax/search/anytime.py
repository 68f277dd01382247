"""The anytime race's arithmetic (pure): what the next job and the champion's confirmation will cost.

Every estimate is read from the race state, so from results the race has recorded (wall seconds
live, simulated seconds in a replay, compile included), never from a clock:
- a new trial's first rung: the mean measured cost of first-rung results so far;
- a promotion from rung k-1 to k: this trial's own rung k-1 cost, scaled by how rung k cost
  relative to rung k-1 for the trials that already reached rung k; before any did, by the steps'
  ratio (rung k-1's cost includes the compile and an evaluation, so this overestimates);
- the champion's confirmation: each victory seed and the reproduce run train from scratch to the
  champion's step, estimated as `reserve_margin` x the measured cost of the champion's whole path
  (every segment it trained, with their compiles and evaluations); the runs are assumed to run one
  after another (the local executor; a parallel backend finishes sooner).
A job fits when the race time now, plus every Train in flight, plus the job, plus the reserve
that the champion would need afterwards, is within the budget. The first trials start whatever
the budget (nothing is measured yet), so a race always has a champion to confirm.
"""
from __future__ import annotations

import math

from igla_jax.search.race_types import RaceState, RaceSummary, Train, Trial


def _ok(t: Trial, k: int) -> bool:
    return len(t.results) > k and t.results[k].bpb is not None


def path_cost(t: Trial) -> float:
    """Measured seconds of every segment the trial trained (compiles and evaluations included)."""
    return math.fsum(r.cost_s for r in t.results)


def train_cost(state: RaceState, t: Trial | None) -> float | None:
    """Estimated seconds of the trial's next Train (a new trial's first rung when t is None); None: nothing measured."""
    rungs = state.config.rungs
    k = 0 if t is None else len(t.results)
    done = [x for x in state.trials if _ok(x, k)]
    if t is None:
        return math.fsum(x.results[0].cost_s for x in done) / len(done) if done else None
    own = t.results[k - 1].cost_s
    if done:
        before = math.fsum(x.results[k - 1].cost_s for x in done)
        return own * math.fsum(x.results[k].cost_s for x in done) / max(before, 1e-9)
    prev_steps = rungs[k - 1] - (rungs[k - 2] if k >= 2 else 0)
    return own * (rungs[k] - rungs[k - 1]) / prev_steps


def top_rung(state: RaceState) -> int:
    """The highest rung index any trial completed with a finite BPB (-1 before any)."""
    return max((len(t.results) - 1 for t in state.trials if t.results and t.results[-1].bpb is not None), default=-1)


def champion(state: RaceState) -> Trial | None:
    """The best trial at the highest rung any trial reached (ties by trial id); None before any result."""
    h = top_rung(state)
    at = [t for t in state.trials if len(t.results) == h + 1 and t.results[-1].bpb is not None] if h >= 0 else []
    return min(at, key=lambda t: (t.results[-1].bpb, t.trial_id)) if at else None


def reserve_for(state: RaceState, path_s: float) -> float:
    """Seconds the confirmation of a champion whose path cost path_s needs: every victory seed and the reproduce run."""
    c = state.config
    return (len(c.victory_seeds) + 1) * c.reserve_margin * path_s if c.confirm else 0.0


def reserve_now(state: RaceState) -> float:
    """The reserve for the costliest trial at the highest rung reached (any of them may end as champion)."""
    h = top_rung(state)
    paths = [path_cost(t) for t in state.trials if len(t.results) == h + 1 and t.results[-1].bpb is not None]
    return reserve_for(state, max(paths)) if paths else 0.0


def committed(state: RaceState) -> float:
    """Estimated seconds of every Train in flight (as if they ran one after another)."""
    total = 0.0
    for a in state.outstanding:
        if isinstance(a, Train):
            est = train_cost(state, state.trial(a.trial_id) if a.rung > 0 else None)
            total += est or 0.0
    return total


def fits(state: RaceState, t: Trial | None) -> bool:
    """True when the trial's next Train (a new trial when t is None) fits the budget (always without one)."""
    c = state.config
    if c.budget_s is None:
        return True
    if not c.confirm:
        return state.elapsed_s < c.budget_s
    est = train_cost(state, t)
    if est is None:
        return True   # nothing measured yet: the first trials start whatever the budget
    h, new_rung = top_rung(state), 0 if t is None else len(t.results)
    new_path = (0.0 if t is None else path_cost(t)) + est
    now = reserve_now(state)
    after = reserve_for(state, new_path) if new_rung > h else max(now, reserve_for(state, new_path)) \
        if new_rung == h else now
    return state.elapsed_s + committed(state) + est + after <= c.budget_s


def summarize(state: RaceState) -> RaceSummary:
    """The summary of a state (pure): used for the Finish action and for live progress."""
    n = len(state.config.rungs)
    occ = [0] * n
    for t in state.trials:
        if t.rung >= 0:
            occ[t.rung] += 1
    run = [0] * n
    for a in state.outstanding:
        if isinstance(a, Train):
            run[a.rung] += 1
    champ = state.trial(state.champion) if state.champion else None
    rep = [r for r in state.seed_runs if r.kind == "reproduce"]
    reproduced = None
    if champ is not None and rep:
        b = rep[0].bpb
        reproduced = b is not None and math.isfinite(b) and abs(b - champ.results[-1].bpb) <= state.config.reproduce_tol
    return RaceSummary(
        phase=state.phase, stopped_by=state.stopped_by, champion=state.champion,
        champion_config=champ.config if champ else None,
        champion_bpb=champ.results[-1].bpb if champ else None,
        champion_step=champ.results[-1].step if champ else None,
        seed_runs=state.seed_runs, reproduced=reproduced, counters=state.counters,
        occupancy=tuple(occ), running=tuple(run), verdicts=state.verdicts,
        champion_rung=len(champ.results) - 1 if champ else None, elapsed_s=state.elapsed_s,
        budget_s=state.config.budget_s,
        reserve_s=reserve_now(state) if state.config.budget_s is not None else None)
