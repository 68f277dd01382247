"""What a replayed method returns (`Trajectory`), the harness's error, and the baselines' names."""
from __future__ import annotations

import dataclasses
import math
from typing import Callable

from igla_jax.execution.replay import ReplayTable

INF = math.inf
BASELINES = ("uniform_grid", "random_full", "asha")
GRID = "uniform_grid"


class HarnessError(ValueError):
    """A method, trajectory or table the harness cannot judge; the message names it."""


@dataclasses.dataclass(frozen=True)
class Trajectory:
    method: str
    repeat: int                   # the repeat index (drives the method's seed)
    workers: int
    completions: tuple[tuple[float, str, float], ...]  # (sim_time_s, config_id, observed top-rung BPB) in time order, each time a config finishes the top rung
    first_promotion_s: float | None                    # simulated time of the first promotion past rung 1 (None: none)
    cheap_promotions: tuple[str, ...] = ()             # config ids a cheap signal (proxy/surrogate) promoted, for H(2)
    sim_end_s: float = 0.0


Method = Callable[[ReplayTable, int, int, float], Trajectory]
