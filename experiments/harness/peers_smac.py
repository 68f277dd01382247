"""SMAC3 2.x Hyperband by ask/tell on the replay clock (see experiments.harness.peers).

Two facades share the Hyperband intensifier (eta and budgets = the table's rungs): `hyperband`
(`HyperbandFacade`: random configs, model-free Hyperband) and `multifidelity`
(`MultiFidelityFacade`: random-forest surrogate + log-EI, SMAC's model-based Hyperband). Each free
worker calls `ask()` (SMAC's intensifier hands out work of open brackets, or starts a new bracket
while results are pending, so n workers are n outstanding asks; the scenario itself keeps
n_workers = 1 so no Dask cluster starts); its result is told with `tell()` as cost = BPB. A
`TrialInfo` carries a config and a budget, and the target trains from scratch to that budget, so
every evaluation, a promotion included, is charged from step 0. When SMAC's config selector finds no
new config (`ConfigurationSpaceExhaustedException`: the encoded space has 3 x 3^7 = 6,561 points, which
Hyperband on 16 simulated workers can use up within the budget), SMAC has ended its search, as its own
`optimize()` would: nothing more is asked, the evaluations in flight finish and are told. Seeded with `repeat`
(scenario seed); the scenario's n_trials, which only sizes the initial design, is the number of
recorded configs times the number of rungs. SMAC writes its run history to a temporary folder,
removed afterwards. Two pieces of its bookkeeping that cost the square of a race's length (membership in the
list of seen configs, objective bounds over the whole run history) are replaced by exact equivalents
(`experiments.harness.peer_speedups.smac`); `stock=True` keeps SMAC's own.
"""
from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Any

import joblib
from smac import HyperbandFacade, MultiFidelityFacade, Scenario
from smac.main.exceptions import ConfigurationSpaceExhaustedException
from smac.runhistory.dataclasses import TrialValue

from experiments.harness import peer_speedups
from experiments.harness.peers import (Answer, PeerClock, PeerError, Recorder, TableMap, config_space, decode,
                                       peer_space, quiet_seeded, run_ask_tell, snap_rung)
from experiments.harness.trajectory import Trajectory
from igla_jax.execution.replay import ReplayTable

FACADES = {"hyperband": HyperbandFacade, "multifidelity": MultiFidelityFacade}


def _never(config: Any, seed: int = 0, budget: float = 0.0) -> float:
    raise AssertionError("the peer adapter answers SMAC by tell(); SMAC must not call its target itself")


def run_smac(table: ReplayTable, repeat: int, workers: int, budget_s: float, *, facade: str = "hyperband",
             method: str = "smac_hyperband", stock: bool = False) -> Trajectory:
    """SMAC3 (Lindauer et al. 2022) Hyperband (Li et al. 2018), model-free or with its random forest.

    stock: SMAC's own bookkeeping, not `experiments.harness.peer_speedups.smac`'s exact equivalents; the same trajectory, slower.
    """
    if facade not in FACADES:
        raise PeerError(f"SMAC facade {facade!r}: choose one of {sorted(FACADES)}")
    space = peer_space(table)
    rungs = space.rungs
    Facade = FACADES[facade]
    # its random forest asks joblib for every core (n_jobs=-1): sequential keeps to one core, and keeps the
    # trees' summation order, so the forest's predictions are deterministic
    fast = contextlib.nullcontext() if stock else peer_speedups.smac()
    with fast, quiet_seeded(repeat, ("smac",)), joblib.parallel_config(backend="sequential"), \
            tempfile.TemporaryDirectory(prefix="igla-peers-smac-") as out:
        scenario = Scenario(config_space(space, repeat), name=f"{method}-{repeat}", output_directory=Path(out),
                            deterministic=True, n_trials=len(space.configs) * len(rungs), min_budget=rungs[0],
                            max_budget=rungs[-1], seed=repeat, n_workers=1)
        smac = Facade(scenario, _never, intensifier=Facade.get_intensifier(scenario, eta=space.eta),
                      overwrite=True, logging_level=False)  # False: leave the root logger alone
        tmap, clock = TableMap(space), PeerClock(table, workers)
        rec = Recorder(method, repeat, workers, space, budget_s)

        exhausted = False

        def next_job() -> tuple[Any, Any, int, int] | None:
            nonlocal exhausted
            if exhausted:
                return None
            try:
                info = smac.ask()
            except ConfigurationSpaceExhaustedException:
                exhausted = True
                return None
            cfg = tmap.assign(info.config, *decode(dict(info.config)))
            return info, cfg, 0, snap_rung(info.budget, space, "SMAC")

        def tell(ans: Answer) -> None:
            smac.tell(ans.token, TrialValue(cost=ans.told, time=0.0), save=False)

        return run_ask_tell(clock, rec, budget_s=budget_s, next_job=next_job, tell=tell)
