"""V1 in the race: a sampler wrapper that sets lr (and beta1) of full-width trials by muP transfer.

When V1's verdict (the coord check, `mup_verdict`) is enabled, every proposed config gets the
proxy-swept (lr, beta1) from `transfer_lr` for its family and width, so the race stops sweeping
lr at full width; jepa keeps its EMA-beta lever (its beta1 is fixed). When the verdict is
disabled, configs pass through unchanged: the race falls back to sweeping lr at full width.
Either way the verdict is recorded in the race state under this sampler's name.
"""
from __future__ import annotations

import dataclasses
import json
import math
import types
from pathlib import Path
from typing import Any, Mapping

from accelerators.mup_transfer import transfer_lr
from igla_jax.evidence.verdict import Verdict
from igla_jax.search.interfaces import Proposal, Sampler
from igla_jax.search.search_space import Config

# Base proposals per call before a family counts as exhausted under V1 (its lr lever collapses).
MAX_ROUNDS = 20


@dataclasses.dataclass(frozen=True)
class MupTransferSampler:
    """Wraps a base sampler; its verdicts are passed on beside this one."""
    base: Sampler
    verdict: Verdict
    study: Mapping[str, Any]
    name: str = "mup_transfer"

    def init(self, seed: int) -> Any:
        return self.base.init(seed)

    def transferred(self, cfg: Config) -> Config:
        lr, beta1 = transfer_lr(cfg.family, cfg.width, study=self.study)
        if cfg.family == "jepa":      # the beta lever is the EMA beta there; Adam beta1 stays fixed
            return dataclasses.replace(cfg, lr=lr)
        return dataclasses.replace(cfg, lr=lr, beta=beta1)

    def propose(self, state: Any, race: Any, family: str, n: int) -> Proposal:
        if not self.verdict.enabled:
            p = self.base.propose(state, race, family, n)
            return Proposal(p.state, p.configs, self.verdict, ((self.base.name, p.verdict),) + p.extra_verdicts)
        out: list[Config] = []
        seen = set(race.seen_ids)
        extra: tuple = ()
        for _ in range(MAX_ROUNDS):
            p = self.base.propose(state, race, family, n)
            state, extra = p.state, ((self.base.name, p.verdict),) + p.extra_verdicts
            for c in map(self.transferred, p.configs):
                if c.config_id not in seen and len(out) < n:
                    seen.add(c.config_id)
                    out.append(c)
            if len(out) == n or not p.configs:
                break
        return Proposal(state, tuple(out), self.verdict, extra)


@dataclasses.dataclass(frozen=True)
class _SavedCoordCheck:
    """A committed coord-check JSON seen through the interface `mup_verdict` reads."""
    config: Any
    _cells: tuple[tuple[str, str, int, float], ...]
    _max: float

    def cells(self) -> list[tuple[str, str, int, float]]:
        return list(self._cells)

    def worst(self, n: int = 5) -> list[tuple[str, str, int, float]]:
        return sorted(self._cells, key=lambda c: -abs(c[3]))[:n]

    def max_abs_slope(self) -> float:
        return self._max


def load_coord_check(path: str | Path) -> _SavedCoordCheck:
    """Reads a JSON written by `python -m coord_check`; raises ValueError naming the file."""
    p = Path(path)
    try:
        d = json.loads(p.read_text())
        cfg = types.SimpleNamespace(**d["config"])
        cells = tuple((f, layer, t + 1, float(s)) for f, layers in d["slopes"].items()
                      for layer, ss in layers.items() for t, s in enumerate(ss) if s is not None)
        top = d["max_abs_slope"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{p}: not a readable coord-check result ({type(e).__name__}: {e})") from None
    return _SavedCoordCheck(cfg, cells, math.inf if top is None else float(top))
