"""DEHB 0.1.2 (Awad et al. 2021) by ask/tell on the replay clock (see experiments.harness.peers).

DEHB is Hyperband whose brackets draw their configs by differential evolution: one DE subpopulation
per fidelity (the table's rungs, eta = the table's), mutants of a higher rung drawn from the lower
rung's best. Each free worker calls `ask()`: DEHB hands out a job of an open bracket whose previous
rung is not waiting, or starts a new bracket (its own asynchronous mode), so n workers are n
outstanding asks. DEHB is given `n_workers=1` so it starts no Dask cluster: the workers are the replay
clock's. A job is a config and a fidelity, trained from step 0 (DEHB, like Hyperband, restarts a
promoted config), so every evaluation is charged from step 0, its real cost; the answer is told as
fitness = BPB, cost = the simulated seconds it took. Seeded with `repeat` (DEHB's seed and the
ConfigSpace's). DEHB writes a log and, at the end of its own `run()` (never called here), its state
into `output_path`: a temporary folder, removed afterwards; its loguru logger is set to errors only
and its handlers are removed afterwards.

Install: DEHB 0.1.2, the registry's newest, declares `numpy<2`, which jax (numpy >= 2) rules out, so
the `compare` extra cannot name it: `pip install -e '.[compare]' && pip install --no-deps dehb==0.1.2`
(the `compare` extra carries its other dependencies). It runs on numpy 2 unchanged (tests/test_peers.py).
"""
from __future__ import annotations

import contextlib
import tempfile
from typing import Any, Iterator

from experiments.harness.peers import (Answer, PeerClock, Recorder, TableMap, config_space, decode, peer_space,
                                       quiet_seeded, run_ask_tell, snap_rung)
from experiments.harness.trajectory import Trajectory
from igla_jax.execution.replay import ReplayTable


@contextlib.contextmanager
def _quiet_loguru() -> Iterator[None]:
    """DEHB reconfigures loguru's global handlers (stdout, a file in output_path): drop them afterwards."""
    from loguru import logger
    try:
        yield
    finally:
        logger.remove()


def run_dehb(table: ReplayTable, repeat: int, workers: int, budget_s: float, *,
             method: str = "dehb") -> Trajectory:
    """DEHB: differential evolution inside Hyperband's brackets, asynchronous over the clock's workers."""
    from dehb import DEHB
    space = peer_space(table)
    rungs = space.rungs
    with quiet_seeded(repeat, ("dehb",)), tempfile.TemporaryDirectory(prefix="igla-peers-dehb-") as out, \
            _quiet_loguru():
        opt = DEHB(cs=config_space(space, repeat), f=None, min_fidelity=rungs[0], max_fidelity=rungs[-1],
                   eta=space.eta, n_workers=1, seed=int(repeat), output_path=out, save_freq="end",
                   log_level="ERROR")
        tmap, clock = TableMap(space), PeerClock(table, workers)
        rec = Recorder(method, repeat, workers, space, budget_s)
        started: dict[int, float] = {}

        def next_job() -> tuple[Any, Any, int, int] | None:
            job = opt.ask()
            cfg = tmap.assign(int(job["config_id"]), *decode(dict(job["config"])))
            started[id(job)] = clock.now
            return job, cfg, 0, snap_rung(job["fidelity"], space, "DEHB")

        def tell(ans: Answer) -> None:
            opt.tell(ans.token, {"fitness": ans.told, "cost": ans.t - started.pop(id(ans.token))})

        return run_ask_tell(clock, rec, budget_s=budget_s, next_job=next_job, tell=tell)
