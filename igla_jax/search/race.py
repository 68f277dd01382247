"""Asynchronous successive halving (ASHA, Li et al. 2020) as a pure state machine.

`Race(config, sampler, filter, pruner, allocator).step(state, event) -> (state, actions)`: no
clock, no files, no randomness beyond the seeds carried in the frozen state, so replaying the
same events gives the same state. An executor performs the actions and feeds back events.

Scheduling, when a worker slot is free (Li et al. 2020, Algorithm 2):
1. promote the best promotable trial of the highest rung that has one (it continues from its
   rung checkpoint, it never retrains); a rung is considered once it holds >= eta results, or at
   any size once no new trial can start (the drain), so the top rung is always reached;
2. else start a new trial: the allocator picks the family among those not exhausted, the sampler
   the config (through the filter's Score / Scored round trip when a filter is enabled); the
   allocator is credited with the family of every trial that starts, queued ones included;
3. when nothing runs and nothing can start, the champion (best validation BPB at the highest rung
   any trial reached: the top rung unless the budget ended the race first) is trained from scratch
   to its step on every victory seed (Confirm: validation and test BPB; victory
   judges only these rows' test BPB) and re-run once from scratch on its own search seed
   (Reproduce: reproducibility evidence, never counted). Search trials train on the race's
   search seed, never a victory seed, so selection and confirmation share no training noise.
A diverged rung prunes the trial with status "diverged"; the race goes on.

Size (`RaceConfig`): `max_trials` caps the trials started; `budget_s` makes the race anytime
(Li et al. 2020: trials are unbounded, the rungs stay): a promotion or a start is made only when it
fits what is left after the work in flight and the champion's confirmation (`igla_jax.search.anytime`),
with time read from the `elapsed_s` of the events. A sampler that runs out ends the starting phase.
"""
from __future__ import annotations

import bisect
import dataclasses
import math
from typing import Any, Sequence

from igla_jax.evidence.verdict import Verdict
from igla_jax.search.anytime import champion as best_at_top, fits, summarize
from igla_jax.search.frozen import evolve
from igla_jax.search.interfaces import Allocator, Filter, Pruner, RandomSampler, RoundRobin, Sampler
from igla_jax.search.race_types import (Action, BudgetExhausted, Confirm, ConfirmDone, Counters, Event, Finish, Prune,
                                        RaceConfig, RaceError, RaceState, Reproduce, ReproduceDone, RungDone,
                                        RungResult, Score, Scored, SeedRun, Start, Train, Trial, trial_index)
from igla_jax.search.race_rules import (ckpt as _ckpt, emit as _emit, finite_at_most as _finite_at_most, promotable,
                                        promotion_cutoff as _promotion_cutoff,  # noqa: F401  (tests read it here)
                                        rung_index, set_verdict as _set_verdict, with_new_trial, with_statuses,
                                        with_trial as _with_trial)
from igla_jax.search.search_space import Config

__all__ = [
    "Race", "RaceConfig", "RaceState", "RaceError", "promotable", "Start", "RungDone", "Scored",
    "BudgetExhausted", "ConfirmDone", "ReproduceDone", "Train", "Prune", "Confirm", "Reproduce",
    "Score", "Finish", "Trial", "RungResult", "SeedRun", "Counters", "Event", "Action", "summarize",
]

_DONE_FOR = {RungDone: Train, Scored: Score, ConfirmDone: Confirm, ReproduceDone: Reproduce}


@dataclasses.dataclass(frozen=True)
class Race:
    """The race's pure transition function with its plugged-in accelerators (defaults: none)."""
    config: RaceConfig
    sampler: Sampler = RandomSampler()
    filter: Filter | None = None
    pruner: Pruner | None = None
    allocator: Allocator = RoundRobin()

    def init(self) -> RaceState:
        c = self.config
        return RaceState(config=c, phase="init", trials=(), outstanding=(), queue=(), seen_ids=frozenset(),
                         exhausted=(), next_action_id=0, counters=Counters(),
                         sampler_state=self.sampler.init(c.seed),
                         allocator_state=self.allocator.init(c.families), verdicts=(), champion=None,
                         seed_runs=(), stopped_by=None,
                         pruner_state=self.pruner.init(c.seed) if self.pruner is not None else None,
                         filter_state=self.filter.init(c.seed) if self.filter is not None else None)

    def replay(self, events: Sequence[Event]) -> tuple[RaceState, tuple[Action, ...]]:
        """Folds `step` over events from `init()`; returns the state and every action emitted."""
        state, out = self.init(), []
        for ev in events:
            state, acts = self.step(state, ev)
            out.extend(acts)
        return state, tuple(out)

    # ------------------------------------------------------------------ transitions
    def step(self, state: RaceState, event: Event) -> tuple[RaceState, tuple[Action, ...]]:
        """Applies one event; returns the new state and the actions the executor must perform."""
        if state.phase == "finished":
            raise RaceError(f"event {type(event).__name__} arrived after the race finished")
        state = evolve(state, counters=state.counters.add(events=1))
        if isinstance(event, Start):
            if state.phase != "init":
                raise RaceError("Start event sent twice")
            verdicts = state.verdicts
            if self.filter is not None:
                verdicts = _set_verdict(verdicts, self.filter.name, self.filter.verdict)
            for role in (self.sampler, self.pruner, self.allocator):  # a role's verdict as known at the start
                v = getattr(role, "verdict", None) if role is not None else None
                if isinstance(v, Verdict):
                    verdicts = _set_verdict(verdicts, role.name, v)
            return self._advance(evolve(state, phase="asha", verdicts=verdicts), [])
        if isinstance(event, BudgetExhausted):
            # the executor's hard deadline (a pause, not the race's size): nothing is confirmed
            state = evolve(state, outstanding=(), stopped_by="deadline")
            return self._finish(state, [])
        if state.phase == "init":
            raise RaceError(f"event {type(event).__name__} before Start")
        state, action = self._pop(state, event)
        t = getattr(event, "elapsed_s", None)
        if t is not None and t > state.elapsed_s:
            state = evolve(state, elapsed_s=float(t))
        if isinstance(event, RungDone):
            state = self._record_rung(state, action, event)
        elif isinstance(event, Scored):
            return self._scored(state, action, event)
        else:
            state = self._record_seed_run(state, action, event)
        c = state.config
        if c.budget_s is not None and not c.confirm and state.elapsed_s >= c.budget_s and state.phase == "asha":
            # no confirmation to reserve for (a replay): the race ends at its first result past the budget
            acts: list = []
            state = self._begin_confirm(evolve(state, outstanding=()), acts)
            return self._finish(state, acts)
        return self._advance(state, [])

    def _pop(self, state: RaceState, event: Event) -> tuple[RaceState, Any]:
        want = _DONE_FOR[type(event)]
        for i, a in enumerate(state.outstanding):
            if a.action_id == event.action_id:
                if not isinstance(a, want):
                    raise RaceError(f"{type(event).__name__} for action {a.action_id}, which is a {type(a).__name__}")
                if isinstance(a, Train) and (a.trial_id, a.rung, a.to_step) != (event.trial_id, event.rung, event.step):
                    raise RaceError(f"RungDone {event!r} does not match its action {a!r}")
                if isinstance(a, (Confirm, Reproduce)) and (a.seed, a.to_step) != (event.seed, event.step):
                    raise RaceError(f"{type(event).__name__} {event!r} does not match its action {a!r}")
                return evolve(state, outstanding=state.outstanding[:i] + state.outstanding[i + 1:]), a
        raise RaceError(f"{type(event).__name__} for action {event.action_id}, which is not outstanding")

    def _record_rung(self, state: RaceState, a: Train, ev: RungDone) -> RaceState:
        ok = ev.status == "ok" and ev.bpb is not None and math.isfinite(ev.bpb)
        res = RungResult(rung=a.rung, step=a.to_step, bpb=float(ev.bpb) if ok else None, cost_s=float(ev.cost_s),
                         train_curve=tuple(ev.train_curve))
        status = "diverged" if not ok else ("done" if a.rung == len(state.config.rungs) - 1 else "waiting")
        state = _with_trial(state, a.trial_id, lambda t: evolve(t, status=status, results=t.results + (res,)))
        return evolve(state, counters=state.counters.add(
            steps=a.to_step - a.from_step, cost_s=float(ev.cost_s), diverged=0 if ok else 1))

    def _record_seed_run(self, state: RaceState, a: Any, ev: Any) -> RaceState:
        ok = ev.status == "ok" and ev.bpb is not None and math.isfinite(ev.bpb)
        kind = "confirm" if isinstance(a, Confirm) else "reproduce"
        test = getattr(ev, "test_bpb", None)
        run = SeedRun(kind=kind, seed=a.seed, step=a.to_step, bpb=float(ev.bpb) if ok else None,
                      cost_s=float(ev.cost_s), status="ok" if ok else "diverged",
                      test_bpb=float(test) if ok and test is not None else None)
        return evolve(state, seed_runs=state.seed_runs + (run,),
                      counters=state.counters.add(steps=a.to_step, cost_s=float(ev.cost_s)))

    def _scored(self, state: RaceState, a: Score, ev: Scored) -> tuple[RaceState, tuple[Action, ...]]:
        if len(ev.scores) != len(a.candidates):
            raise RaceError(f"Scored carries {len(ev.scores)} scores for {len(a.candidates)} candidates")
        assert self.filter is not None
        dec = self.filter.keep(state.filter_state, a.candidates, ev.scores)
        keep = tuple(bool(k) for k in dec.keep)
        if len(keep) != len(a.candidates):
            raise RaceError(f"filter {self.filter.name!r} returned {len(keep)} decisions for {len(a.candidates)} candidates")
        state = evolve(state, filter_state=dec.state,
                       verdicts=_set_verdict(state.verdicts, self.filter.name, dec.verdict))
        acts: list[Action] = []
        kept = tuple(c for c, k in zip(a.candidates, keep) if k)
        n_kept = len(kept)
        for c, s, k in zip(a.candidates, ev.scores, keep):
            if not k:
                state, act = _emit(state, lambda i: Prune(
                    i, "", c, state.config.search_seed, 0, None,
                    f"{self.filter.name}: score {float(s):.6g} outside the kept {n_kept} of {len(keep)}",
                    self.filter.name, float(s)))
                acts.append(act)
        state = evolve(state, queue=state.queue + kept,
                       counters=state.counters.add(pruned=len(keep) - n_kept))
        return self._advance(state, acts)

    # ------------------------------------------------------------------ scheduling
    def _advance(self, state: RaceState, acts: list) -> tuple[RaceState, tuple[Action, ...]]:
        if state.phase == "asha":
            state = self._fill(state, acts)
            if not state.outstanding and self._next_promotion(state) is None and not self._can_start(state):
                state = self._begin_confirm(state, acts)
        if state.phase == "confirm" and not state.outstanding:
            return self._finish(state, acts)
        return state, tuple(acts)

    def _filter_on(self) -> bool:
        return self.filter is not None and self.filter.verdict.enabled

    def _can_start(self, state: RaceState) -> bool:
        return self._start_limit(state) is None

    def _start_limit(self, state: RaceState) -> str | None:
        """What stops a new trial from starting now: "trials" (max_trials), "sampler" (exhausted), "budget"; None."""
        c = state.config
        if c.max_trials is not None and state.counters.started >= c.max_trials:
            return "trials"
        if not state.queue and len(state.exhausted) >= len(c.families):
            return "sampler"
        if not fits(state, None):
            return "budget"
        return None

    def _fill(self, state: RaceState, acts: list) -> RaceState:
        while True:
            busy = sum(isinstance(a, Train) for a in state.outstanding)
            if busy >= state.config.workers:
                return state
            trial = self._next_promotion(state)
            if trial is not None:
                state = self._promote(state, trial, acts)
                continue
            if not self._can_start(state):
                return state
            if state.queue:
                state = self._start(state, state.queue[0], acts, queue=state.queue[1:])
                continue
            if any(isinstance(a, Score) for a in state.outstanding):
                return state  # wait for the filter's scores
            state, family = self._pick_family(state)
            if self._filter_on():
                state, configs = self._propose(state, family, state.config.score_pool)
                if configs:
                    state, act = _emit(state, lambda i: Score(i, family, configs))
                    acts.append(act)
                    return state
                continue
            state, configs = self._propose(state, family, 1)
            if configs:
                state = self._start(state, configs[0], acts, queue=state.queue)

    def _pick_family(self, state: RaceState) -> tuple[RaceState, str]:
        available = tuple(f for f in state.config.families if f not in state.exhausted)
        alloc = self.allocator.next_family(state.allocator_state, state, available)
        fam = alloc.family
        if fam not in available:  # never substituted: the allocator's choice is what runs
            why = "exhausted" if fam in state.exhausted else "not a family of the race"
            raise RaceError(f"allocator {self.allocator.name!r} chose family {fam!r} ({why}), "
                            f"not one of the available {available}")
        return evolve(state, allocator_state=alloc.state,
                      verdicts=_set_verdict(state.verdicts, self.allocator.name, alloc.verdict)), fam

    def _propose(self, state: RaceState, family: str, n: int) -> tuple[RaceState, tuple[Config, ...]]:
        prop = self.sampler.propose(state.sampler_state, state, family, n)
        configs = tuple(prop.configs)
        if len(configs) > n or any(c.family != family or c.config_id in state.seen_ids for c in configs):
            raise RaceError(f"sampler {self.sampler.name!r} proposed configs that break its contract")
        exhausted = state.exhausted + ((family,) if len(configs) < n else ())
        verdicts = _set_verdict(state.verdicts, self.sampler.name, prop.verdict)
        for name, v in prop.extra_verdicts:
            verdicts = _set_verdict(verdicts, name, v)
        return evolve(
            state, sampler_state=prop.state, exhausted=exhausted,
            seen_ids=state.seen_ids | {c.config_id for c in configs}, verdicts=verdicts), configs

    def _start(self, state: RaceState, cfg: Config, acts: list, *, queue: tuple) -> RaceState:
        c = state.config
        tid = f"t{state.counters.started:04d}"
        trial = Trial(trial_id=tid, config=cfg, seed=c.search_seed, status="running")
        state = evolve(with_new_trial(state, trial), queue=queue, counters=state.counters.add(started=1),
                       allocator_state=self.allocator.credit(state.allocator_state, cfg.family))
        state, act = _emit(state, lambda i: Train(
            i, tid, cfg, c.search_seed, 0, 0, c.rungs[0], c.rungs[-1], None, _ckpt(tid, c.rungs[0]) if len(c.rungs) > 1 else None,
            None, None))
        acts.append(act)
        return state

    def _next_promotion(self, state: RaceState) -> Trial | None:
        c = state.config
        draining = not self._can_start(state)
        idx = rung_index(state)
        for k in reversed(range(len(c.rungs) - 1)):
            at_k = idx.at[k]   # sorted: the cutoff is an index into it
            if len(at_k) < c.eta and not draining:
                continue
            cut = at_k[max(1, len(at_k) // c.eta) - 1] if at_k else -math.inf   # = _promotion_cutoff(at_k, eta)
            for b, tid in idx.waiting[k]:   # the trials waiting at rung k, best first (ties by trial id)
                if not _finite_at_most(b, cut):
                    break                   # the rest are no better: none of them is promotable
                t = state.trials[trial_index(state.trials, tid)]
                if fits(state, t):          # the best promotable trial that fits the budget
                    return t
        return None

    def _promote(self, state: RaceState, t: Trial, acts: list) -> RaceState:
        c, k = state.config, len(t.results) - 1
        r = t.results[k]
        if self.pruner is not None:
            dec = self.pruner.judge(state.pruner_state, state, t)
            j = dec.judgement
            state = evolve(state, pruner_state=dec.state,
                           verdicts=_set_verdict(state.verdicts, self.pruner.name, dec.verdict))
            if j.prune:
                if r.bpb == rung_index(state).at[k][0]:   # the best result at rung k
                    raise RaceError(f"pruner {self.pruner.name!r} pruned {t.trial_id}, the best trial at rung {k + 1}")
                state = _with_trial(state, t.trial_id, lambda x: evolve(x, status="pruned"))
                v = dict(state.verdicts).get(self.pruner.name)
                state, act = _emit(state, lambda i: Prune(i, t.trial_id, t.config, t.seed, r.step, r.bpb,
                                                          j.reason, self.pruner.name, float(j.score), j.interval,
                                                          v.line() if v is not None else None))
                acts.append(act)
                return evolve(state, counters=state.counters.add(pruned=1))
        state = _with_trial(state, t.trial_id, lambda x: evolve(x, status="running"))
        nxt = k + 1
        save = _ckpt(t.trial_id, c.rungs[nxt]) if nxt < len(c.rungs) - 1 else None
        state, act = _emit(state, lambda i: Train(i, t.trial_id, t.config, t.seed, nxt, r.step, c.rungs[nxt],
                                                  c.rungs[-1], _ckpt(t.trial_id, r.step), save, "asha", r.bpb))
        acts.append(act)
        return state

    def _begin_confirm(self, state: RaceState, acts: list) -> RaceState:
        c = state.config
        champ = best_at_top(state)
        stop = "budget" if self._start_limit(state) == "budget" else None
        at = rung_index(state).at   # every rung's results, sorted (statuses change below, results do not)
        pruned = []
        for t in state.trials:
            if t.status != "waiting" or (champ is not None and t.trial_id == champ.trial_id):
                continue
            k = len(t.results) - 1
            r = t.results[k]
            rank = 1 + bisect.bisect_left(at[k], r.bpb)   # 1 + the results strictly better
            pruned.append(t.trial_id)
            state, act = _emit(state, lambda i: Prune(
                i, t.trial_id, t.config, t.seed, r.step, r.bpb,
                f"asha: not promoted past rung {k + 1} of {len(c.rungs)} (rank {rank} of {len(at[k])} "
                f"at step {r.step})",
                "asha", r.bpb))
            acts.append(act)
        if pruned:
            state = evolve(with_statuses(state, "pruned", frozenset(pruned)),
                           counters=state.counters.add(pruned=len(pruned)))
        if champ is None:
            return evolve(state, phase="confirm", stopped_by=state.stopped_by or stop)
        # the champion ends its climb here (status done), at the highest rung reached
        state = _with_trial(state, champ.trial_id, lambda x: evolve(x, status="done"))
        state = evolve(state, phase="confirm", champion=champ.trial_id,
                       stopped_by=state.stopped_by or stop)
        if not c.confirm:
            return state
        step = champ.results[-1].step
        for s in c.victory_seeds:  # every victory seed, from scratch: none of them is the selected run
            state, act = _emit(state, lambda i: Confirm(i, champ.config, s, step, c.rungs[-1]))
            acts.append(act)
        state, act = _emit(state, lambda i: Reproduce(i, champ.config, champ.seed, step, champ.results[-1].bpb,
                                                         c.rungs[-1]))
        acts.append(act)
        return state

    def _finish(self, state: RaceState, acts: list) -> tuple[RaceState, tuple[Action, ...]]:
        state = evolve(state, phase="finished", outstanding=(),
                       stopped_by=state.stopped_by or "complete")
        state, act = _emit(state, lambda i: Finish(i, summarize(state)), track=False)
        acts.append(act)
        return state, tuple(acts)
