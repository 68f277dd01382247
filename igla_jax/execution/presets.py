"""Race presets (the non-searched settings of a race) and the --budget syntax."""
from __future__ import annotations

import dataclasses
import re

from igla_jax.evidence.prereg import Prereg
from igla_jax.search.race import RaceConfig
from igla_jax.search.search_space import DEFAULT_SPACE, SearchSpace
from igla_jax.training.models.config import FAMILIES


class RaceSetupError(RuntimeError):
    """A user-fixable problem before the race starts (bad --out, resume mismatch, bad budget)."""


@dataclasses.dataclass(frozen=True)
class Preset:
    """Race configuration (not pre-registered, except that `full` takes its rungs from the prereg)."""
    name: str
    rungs: tuple[int, ...] | None   # None: the pre-registered rungs
    space: SearchSpace
    context: int
    batch: int
    max_trials: int | None          # None: eta ** len(rungs) (81 for the pre-registered rungs)
    workers: int = 1
    families: tuple[str, ...] = FAMILIES
    canonical: bool = False         # append confirmed rows to assertions/seed_results.jsonl

    def default_trials(self, prereg: Prereg) -> int:
        """The preset's pre-registered trial count (eta^len(rungs) unless the preset names one)."""
        rungs = tuple(self.rungs) if self.rungs is not None else tuple(prereg.rungs)
        return self.max_trials if self.max_trials is not None else prereg.eta ** len(rungs)

    def race_config(self, prereg: Prereg, seed: int, *, budget_s: float | None = None,
                    max_trials: int | None = None) -> RaceConfig:
        """The race of this preset. Its size: `max_trials` when given; else, with a budget, no trial cap
        (the anytime race); without one, the preset's trial count."""
        rungs = tuple(self.rungs) if self.rungs is not None else tuple(prereg.rungs)
        if max_trials is None and budget_s is None:
            max_trials = self.default_trials(prereg)
        return RaceConfig(rungs=rungs, eta=prereg.eta, seed=seed, max_trials=max_trials,
                          victory_seeds=tuple(prereg.seeds), reproduce_tol=prereg.reproduce_tol,
                          families=self.families, workers=self.workers, score_pool=prereg.filter_score_pool,
                          budget_s=budget_s, reserve_margin=prereg.confirm_reserve_margin)


PRESETS: dict[str, Preset] = {
    # seconds: one compiled program per family (width/depth/dropout/EMA pinned), 4 trials, rungs 4 and 12
    "smoke": Preset("smoke", (4, 12), SearchSpace(width=(16,), depth=(2,), dropout=(0.0,), ema_beta=(0.99,),
                                                  head_dim=8), context=32, batch=8, max_trials=4),
    # ~2 minutes on 2 idle CPU cores (102 s cold cache, 61 s warm): 27 trials, rungs 100/300/900, widths 32-96, depths 1-3
    "quick": Preset("quick", (100, 300, 900), SearchSpace(width=(32, 64, 96), depth=(1, 2, 3)),
                    context=64, batch=12, max_trials=27),
    # the pre-registered rungs at one tenth (100/300/900/2700, 81 trials) at the quick shape: the preset
    # of the recorded learning-curve table, so a recorded curve is exactly a live trial of this preset
    "tenth": Preset("tenth", (100, 300, 900, 2700), SearchSpace(width=(32, 64, 96), depth=(1, 2, 3)),
                    context=64, batch=12, max_trials=81),
    # the pre-registered race (an accelerator's job): rungs from assertions/preregistration.json
    "full": Preset("full", None, DEFAULT_SPACE, context=128, batch=32, max_trials=None, canonical=True),
}

_BUDGET_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smh])\s*$")


def parse_budget(text: str) -> float:
    """'90s', '15m', '2h' (or '1.5h') -> seconds; anything else raises RaceSetupError."""
    m = _BUDGET_RE.match(text or "")
    if not m or float(m.group(1)) <= 0:
        raise RaceSetupError(f"--budget {text!r}: expected a positive number with a unit s, m or h (e.g. 90s, 15m, 2h)")
    return float(m.group(1)) * {"s": 1, "m": 60, "h": 3600}[m.group(2)]
