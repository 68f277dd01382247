"""HpBandSter 0.7.4 BOHB (the reference) on the replay clock (see experiments.harness.peers).

Its `Master` talks to workers through a Pyro4 nameserver and threads, so its timing would be the
host's, not the table's. We keep the reference's decision code and drop only the transport: the
BOHB config generator (`config_generators.bohb.BOHB`, its KDEs and defaults) and the Hyperband
brackets (`BOHB.get_next_iteration` -> `SuccessiveHalving`, called on a real BOHB instance built
without its dispatcher) are driven by a copy of `Master.run`'s loop: keep up to n jobs running
(its dynamic queue sizes (n - 1, n)); a job comes from the first active iteration that has one,
else a new iteration starts; a result goes to `iteration.register_result` and then
`config_generator.new_result`, as `Master.job_callback` does. So n workers are simulated with the
reference's own parallel brackets. Deterministic: numpy's global RNG (which the config generator
uses) is seeded with `repeat` for the run and restored; ConfigSpace is seeded with `repeat`.

Each job trains its config from scratch to its budget (HpBandSter's workers get only a budget),
so a promotion is charged from step 0.

Speed: the config generator's scalar `scipy.stats.truncnorm.rvs` calls are most of a race's time;
they are answered by `experiments.harness.exact_truncnorm` (the same draws and arithmetic without scipy's
per-call overhead, switched on only after it matches scipy bit for bit), and the KDEs' one-point pdf by
`experiments.harness.peer_speedups.kde` (the same, for statsmodels). `stock=True` runs scipy's and statsmodels'
own; tests/test_peers.py checks both give the same trajectories.
"""
from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
from hpbandster.core.dispatcher import Job
from hpbandster.optimizers.bohb import BOHB
from hpbandster.optimizers.config_generators import bohb as cg_bohb
from hpbandster.optimizers.config_generators.bohb import BOHB as CG_BOHB

from experiments.harness import exact_truncnorm as _exact_truncnorm, peer_speedups
from experiments.harness.peers import (Answer, PeerClock, PeerSpace, Recorder, TableMap, config_space, decode,
                                       peer_space, quiet_seeded, run_ask_tell, snap_rung)
from experiments.harness.trajectory import Trajectory
from igla_jax.execution.replay import ReplayTable


def _hyperband(space: PeerSpace, cg: CG_BOHB) -> BOHB:
    """A BOHB master with BOHB.__init__'s bracket arithmetic and no dispatcher thread or nameserver."""
    hb = BOHB.__new__(BOHB)
    rungs = space.rungs
    hb.eta, hb.min_budget, hb.max_budget, hb.config_generator = space.eta, rungs[0], rungs[-1], cg
    hb.max_SH_iter = -int(np.log(hb.min_budget / hb.max_budget) / np.log(hb.eta)) + 1
    hb.budgets = hb.max_budget * np.power(hb.eta, -np.linspace(hb.max_SH_iter - 1, 0, hb.max_SH_iter))
    return hb


def run_hpbandster(table: ReplayTable, repeat: int, workers: int, budget_s: float, *,
                   method: str = "hpbandster_bohb", stock: bool = False) -> Trajectory:
    """BOHB (Falkner, Klein & Hutter 2018) with the reference implementation's defaults, on the table's clock.

    stock: scipy's own truncnorm.rvs and statsmodels' own KDE pdf (slower; the same trajectory).
    """
    space = peer_space(table)
    fast = contextlib.ExitStack()
    if not stock:
        fast.enter_context(_exact_truncnorm.patched(cg_bohb))
        fast.enter_context(peer_speedups.kde())
    with fast, quiet_seeded(repeat, ("hpbandster",)):
        cg = CG_BOHB(configspace=config_space(space, repeat))   # top 15 %, 64 samples, bw x 3, 1/3 random
        hb = _hyperband(space, cg)
        tmap, clock = TableMap(space), PeerClock(table, workers)
        rec = Recorder(method, repeat, workers, space, budget_s)
        iterations: list[Any] = []
        issued: dict[Any, float] = {}

        def finish(config_id: Any, config: dict, budget: float, loss: float | None, t0: float, t1: float) -> None:
            job = Job(config_id, config=config, budget=budget, working_directory=".")
            job.timestamps = {"submitted": t0, "started": t0, "finished": t1}
            job.result = None if loss is None else {"loss": loss, "info": {}}
            iterations[config_id[0]].register_result(job)
            cg.new_result(job)

        def next_job() -> tuple[Any, Any, int, int]:
            while True:
                run = next((r for it in iterations if not it.is_finished for r in [it.get_next_run()] if r), None)
                if run is None:
                    iterations.append(hb.get_next_iteration(len(iterations), {"result_logger": None}))
                    continue
                config_id, config, budget = run
                cfg = tmap.assign(config_id, *decode(config))
                issued[config_id] = clock.now
                return (config_id, config, budget), cfg, 0, snap_rung(budget, space, "HpBandSter")

        def tell(ans: Answer) -> None:
            config_id, config, budget = ans.token
            finish(config_id, config, budget, ans.told, issued.pop(config_id), ans.t)

        return run_ask_tell(clock, rec, budget_s=budget_s, next_job=next_job, tell=tell)

