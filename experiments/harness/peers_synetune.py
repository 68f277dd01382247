"""Syne Tune 0.16 ASHA, BOHB, ASHA-CQR and ASHA-BORE on its own simulator backend, reading our table (see experiments.harness.peers).

The run is Syne Tune's: `Tuner` + its scheduler (`baselines.ASHA`; `BOHB`, `ASHACQR`, `ASHABORE`: ASHA with
the KDE searcher) + a `SimulatorBackend`, the backend its `UserBlackboxBackend` builds on. We
subclass `SimulatorBackend` directly with what `UserBlackboxBackend` does for a blackbox (every
result of a trial at once, `elapsed_time` since its (re)start; a resumed trial skips what it had
done) because a trial's answer depends on its trial_id (our shared mapping) and its worker
(compile seconds), and because `syne_tune.blackbox_repository` imports `huggingface_hub` at import
time for downloads we never make. A trial reports its BPB at every rung step with elapsed time =
compile seconds (the first run of its shape on its worker) + recorded segment seconds + one
evaluation per rung, as ReplayBackend charges; Syne Tune's ASHA is the stopping variant (a trial
keeps training until a rung stops it), so it is charged exactly what it trained.

Three changes make Syne Tune's simulator exact and deterministic, none touching its decisions:
its time keeper no longer adds the host's real time spent in the tuner loop; its delays
(`SimulatorConfig`) are 0; and the tuner's sleep, which advances the clock by fixed steps while
all workers are busy, jumps to the next simulated event instead, without the real `time.sleep(0)`
(which only yields the core). (`_stop_or_pause_trial` still adds its 2 ms per stop.) The tuner's
status counts trials per status as they change instead of re-counting every trial on every loop
(its failure check asks each time): the same numbers, O(1) instead of O(trials). Both are
bookkeeping outside the scheduler. Its quadratic bookkeeping inside the scheduler (ASHA's rung ranking,
the multi-fidelity searcher's refit, the KDE's features) is replaced by exact equivalents
(`experiments.harness.peer_speedups.synetune`). `stock=True` runs Syne Tune's own Tuner, TuningStatus and
bookkeeping, and tests/test_peers.py checks that the trajectories are identical. n workers: the Tuner's own `n_workers`; a started trial takes the free
worker with the lowest index, released at its stop or completion. Seeded with `repeat` (scheduler
and numpy's global RNG, from which ASHA draws brackets). Files the Tuner writes go to a temporary
folder, removed afterwards; what it prints is dropped.
"""
from __future__ import annotations

import collections
import contextlib
import heapq
import io
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

from syne_tune import Tuner
from syne_tune.backend.simulator_backend.simulator_backend import SimulatorBackend, SimulatorConfig
from syne_tune.backend.simulator_backend.time_keeper import SimulatedTimeKeeper
from syne_tune.backend.trial_status import Status
from syne_tune.config_space import choice, randint
from syne_tune.constants import ST_TUNER_TIME
from syne_tune.optimizer.baselines import ASHA, ASHABORE, ASHACQR, BOHB
from syne_tune.optimizer.scheduler import SchedulerDecision
from syne_tune.tuner_callback import TunerCallback
from syne_tune.tuning_status import TuningStatus

from experiments.harness import peer_speedups
from experiments.harness.peers import (DIVERGED_BPB, PeerError, PeerSpace, Recorder, TableMap, decode, peer_space,
                                       quiet_seeded)
from experiments.harness.trajectory import Trajectory
from igla_jax.execution.replay import ReplayTable
from igla_jax.search.search_space import LEVER_FIELDS, Config

ELAPSED, STEP, METRIC = "elapsed_time", "step", "bpb"
SCHEDULERS = {"asha": ASHA, "bohb": BOHB, "cqr": ASHACQR, "bore": ASHABORE}


class _SimulatedTime(SimulatedTimeKeeper):
    """Syne Tune's simulated clock without the host's real time between backend calls."""

    def real_time_since_last_recent_exit(self) -> float:
        return 0.0


class _CountingStatus(TuningStatus):
    """Syne Tune's TuningStatus with the trials per status counted as they change, not re-counted per query."""

    def __init__(self, metric_names: list[str]):
        super().__init__(metric_names)
        self._count: collections.Counter[str] = collections.Counter()

    def update(self, trial_status_dict: Any, new_results: Any) -> None:
        for trial_id, (_, status) in trial_status_dict.items():
            old = self.last_trial_status_seen.get(trial_id)
            if old is not None:
                self._count[old] -= 1
            self._count[status] += 1
        super().update(trial_status_dict, new_results)

    def mark_running_job_as_stopped(self) -> None:
        super().mark_running_job_as_stopped()
        self._count = collections.Counter(self.last_trial_status_seen.values())

    def _num_trials(self, status: str | set[str]) -> int:
        return sum(self._count[s] for s in ({status} if isinstance(status, str) else set(status)))


class _SimTuner(Tuner):
    """Syne Tune's Tuner with the counting status and no real sleep: `_Clock.on_tuning_sleep` moves the clock."""

    def run(self) -> None:
        self.tuning_status = _CountingStatus(metric_names=self.scheduler.metric_names())
        super().run()

    def _sleep(self) -> None:
        for callback in self.callbacks:
            callback.on_tuning_sleep(self.sleep_time)


class TableBackend(SimulatorBackend):
    """Syne Tune's simulator backend answered from the table, with n workers compiling once per shape."""

    def __init__(self, table: ReplayTable, space: PeerSpace, workers: int):
        zero = SimulatorConfig(0.0, 0.0, 0.0, 0.0, 0.0)
        super().__init__(entry_point=str(Path(__file__)), elapsed_time_attr=ELAPSED, simulator_config=zero,
                         tuner_sleep_time=0.0)
        self._time_keeper = _SimulatedTime()
        self.table, self.space, self.tmap = table, space, TableMap(space)
        self.config_of: dict[int, Config] = {}
        self._free = list(range(workers))
        self._worker: dict[int, int] = {}
        self._compiled: set[tuple[int, str]] = set()
        self._paused_at: dict[int, int] = {}

    def next_event_time(self) -> float | None:
        heap = self._simulator_state.event_heap
        return heap[0][0] if heap else None

    def _release(self, trial_id: int) -> None:
        w = self._worker.pop(trial_id, None)
        if w is not None:
            heapq.heappush(self._free, w)

    def _process_complete_event(self, trial_id: int, time_event: float, status: str) -> None:
        super()._process_complete_event(trial_id, time_event, status)
        self._release(trial_id)

    def _process_stop_event(self, trial_id: int, time_event: float) -> None:
        super()._process_stop_event(trial_id, time_event)
        self._release(trial_id)

    def _pause_trial(self, trial_id: int, result: dict | None) -> None:
        super()._pause_trial(trial_id, result)
        if result is not None and STEP in result:
            self._paused_at[trial_id] = int(result[STEP])

    def _run_job_and_collect_results(self, trial_id: int, config: dict | None = None) -> tuple[str, list[dict]]:
        if config is None:
            config = self._trial_dict[trial_id].config
        cfg = self.config_of[trial_id] = self.tmap.assign(trial_id, *decode(config))  # keyed: a resume keeps it
        if not self._free:
            raise PeerError(f"Syne Tune started trial {trial_id} with all {len(self._worker)} workers busy")
        worker = heapq.heappop(self._free)
        self._worker[trial_id] = worker
        run = self.table.run(cfg, self.table.primary_seed)
        elapsed = 0.0
        if (worker, run.shape) not in self._compiled:
            self._compiled.add((worker, run.shape))
            elapsed = self.table.compile_of(run.shape)
        start = self._paused_at.get(trial_id, 0)
        prev = run.index(start, "syne tune") if start else -1
        results: list[dict] = []
        for r in (r for r in self.space.rungs if r > start):
            j = run.index(r, "syne tune")
            base = run.seg_cum[prev] if prev >= 0 else 0.0
            dead = next((k for k in range(prev + 1, j + 1) if run.val_bpb[k] is None), None)
            if dead is not None:  # told DIVERGED_BPB once, at the segment it died in; no evaluation
                results.append({STEP: r, METRIC: DIVERGED_BPB, "diverged": True,
                                ELAPSED: elapsed + run.seg_cum[dead] - base})
                break
            elapsed += run.seg_cum[j] - base + run.eval_s[j]
            results.append({STEP: r, METRIC: float(run.val_bpb[j]), "diverged": False, ELAPSED: elapsed})
            prev = j
        return Status.completed, results


class _Clock(TunerCallback):
    """Starts the simulated clock, jumps it to the next event when the tuner would sleep, records the Trajectory."""

    def __init__(self, backend: TableBackend, rec: Recorder, budget_s: float):
        self.backend, self.rec, self.budget_s = backend, rec, budget_s

    def on_tuning_start(self, tuner: Any) -> None:
        tuner.sleep_time = 0
        self.backend.time_keeper.start_of_time()

    def on_tuning_sleep(self, sleep_time: float) -> None:
        t = self.backend.next_event_time()
        self.backend.time_keeper.advance_to(self.budget_s if t is None else t)

    def on_trial_result(self, trial: Any, status: str, result: dict[str, Any], decision: str) -> None:
        cfg, t, step = self.backend.config_of[trial.trial_id], float(result[ST_TUNER_TIME]), int(result[STEP])
        rungs = self.backend.space.rungs
        self.rec.observed(cfg, step, None if result["diverged"] else float(result[METRIC]), t)
        if step < rungs[-1] and decision == SchedulerDecision.CONTINUE and not result["diverged"]:
            self.rec.issued(cfg, rungs[rungs.index(step) + 1], t)   # the stopping variant promotes by not stopping


@contextlib.contextmanager
def _scratch_folder() -> Iterator[None]:
    """Syne Tune writes under $SYNETUNE_FOLDER: a temporary one for the run."""
    old = os.environ.get("SYNETUNE_FOLDER")
    with tempfile.TemporaryDirectory(prefix="igla-peers-synetune-") as d:
        os.environ["SYNETUNE_FOLDER"] = d
        try:
            yield
        finally:
            if old is None:
                os.environ.pop("SYNETUNE_FOLDER", None)
            else:
                os.environ["SYNETUNE_FOLDER"] = old


def run_synetune(table: ReplayTable, repeat: int, workers: int, budget_s: float, *, searcher: str = "asha",
                 method: str = "synetune_asha", stock: bool = False) -> Trajectory:
    """Syne Tune's ASHA (Li et al. 2020), BOHB (Falkner et al. 2018, on ASHA), ASHA-CQR (conformal quantile
    regression, Salinas et al. 2023) or ASHA-BORE (Tiao et al. 2021, on ASHA) on its simulator backend.

    stock: Syne Tune's own code throughout (its Tuner loop with real sleeps and re-counted status, and its
    bookkeeping that `experiments.harness.peer_speedups.synetune` replaces); the same trajectory, slower.
    """
    if searcher not in SCHEDULERS:
        raise PeerError(f"Syne Tune searcher {searcher!r}: choose one of {sorted(SCHEDULERS)}")
    space = peer_space(table)
    rungs = space.rungs
    cs: dict[str, Any] = {"family": choice(list(space.families))}
    cs.update({f: randint(0, max(n - 1, 1)) for f, n in zip(LEVER_FIELDS, space.n_levels)})
    fast = contextlib.nullcontext() if stock else peer_speedups.synetune()
    with fast, quiet_seeded(repeat, ("syne_tune",)), _scratch_folder():
        scheduler = SCHEDULERS[searcher](cs, metric=METRIC, time_attr=STEP, max_t=rungs[-1], grace_period=rungs[0],
                                         reduction_factor=space.eta, do_minimize=True, random_seed=repeat)
        backend = TableBackend(table, space, workers)
        rec = Recorder(method, repeat, workers, space, budget_s)
        clock = _Clock(backend, rec, budget_s)
        with contextlib.redirect_stdout(io.StringIO()):  # the Tuner prints every trial and a summary
            tuner = Tuner if stock else _SimTuner
            tuner(trial_backend=backend, scheduler=scheduler, n_workers=workers, sleep_time=0,
                  stop_criterion=lambda status: backend.time_keeper.time() >= budget_s, callbacks=[clock],
                  tuner_name=f"{method}-{repeat}", suffix_tuner_name=False, save_tuner=False,
                  print_update_interval=1e9, results_update_interval=1e9).run()
        return rec.trajectory(backend.time_keeper.time())
