"""Optuna 5 (TPE sampler + Hyperband pruner) by ask/tell on the replay clock (see experiments.harness.peers).

Each free worker asks a trial, trains it rung by rung (continuing, charged per segment), reports the
BPB at each rung step and stops when `should_prune()` says so: Optuna's own asynchronous pruning,
so n workers are n concurrent trials of one in-memory study. TPE is seeded with `repeat` (its default
constant liar covers the running trials); the pruner's bracket of a trial is a hash of the study
name (which carries `repeat`) and the trial number. A diverged run is reported as DIVERGED_BPB and
told PRUNED.
"""
from __future__ import annotations

from typing import Any

import optuna

from experiments.harness.peers import Answer, PeerClock, Recorder, TableMap, peer_space, quiet_seeded, run_ask_tell
from experiments.harness.trajectory import Trajectory
from igla_jax.execution.replay import ReplayTable
from igla_jax.search.search_space import LEVER_FIELDS


def run_optuna(table: ReplayTable, repeat: int, workers: int, budget_s: float, *,
               method: str = "optuna_tpe_hyperband") -> Trajectory:
    """TPE (Bergstra et al. 2011) + Hyperband pruning (Li et al. 2018) as Optuna runs them, on the table's clock."""
    space = peer_space(table)
    rungs = space.rungs
    with quiet_seeded(repeat, ("optuna",)):
        study = optuna.create_study(
            study_name=f"igla-peers-optuna-{repeat}", direction="minimize",
            sampler=optuna.samplers.TPESampler(seed=repeat),
            pruner=optuna.pruners.HyperbandPruner(min_resource=rungs[0], max_resource=rungs[-1],
                                                  reduction_factor=space.eta))
        tmap, clock = TableMap(space), PeerClock(table, workers)
        rec = Recorder(method, repeat, workers, space, budget_s)
        pending: list[tuple[Any, Any, int, int]] = []   # a continuation, for the worker that just freed

        def next_job() -> tuple[Any, Any, int, int]:
            if pending:
                return pending.pop()
            trial = study.ask()
            fam = trial.suggest_categorical("family", list(space.families))
            levers = tuple(trial.suggest_int(f, 0, n - 1) for f, n in zip(LEVER_FIELDS, space.n_levels))
            cfg = tmap.assign(trial.number, fam, levers)
            return (trial, cfg), cfg, 0, rungs[0]

        def tell(ans: Answer) -> None:
            trial, cfg = ans.token
            trial.report(ans.told, ans.step)
            if ans.step == rungs[-1]:
                study.tell(trial, ans.told)
            elif ans.bpb is None or trial.should_prune():
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            else:
                pending.append(((trial, cfg), cfg, ans.step, rungs[rungs.index(ans.step) + 1]))

        return run_ask_tell(clock, rec, budget_s=budget_s, next_job=next_job, tell=tell)
