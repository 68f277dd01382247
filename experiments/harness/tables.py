"""Synthetic tables for the harness: the recorded table's shape and size with curves whose answers are known.

`tenth_table` plans runs exactly as `experiments.record_curves` does (per family `per_stratum` phi-grid
and as many uniform configs, every `extra_every`-th also on two extra seeds) and answers them from
`curve`: a smooth learning curve per config whose early ranking partly crosses the final one
(high lr looks good early, width pays late), seed noise, and a known shift `phi_shift` of every phi
config's BPB (negative: the phi-grid holds better configs). Costs follow the measured per-step
seconds of the tenth shapes (about 0.004 s/step at width 32 x depth 2, 0.011 at 96 x 3) and
compile seconds of 2-3.5 s per shape. Used for the tests and for the cost figure (`--synthetic`).
"""
from __future__ import annotations

import hashlib
import math
from typing import Sequence

from igla_jax import curves
from igla_jax.execution.replay import ReplayTable, synthetic_table
from igla_jax.search.search_space import Config


def _u(*key: object) -> float:
    """A deterministic uniform(0, 1) from a key."""
    h = hashlib.sha256(repr(key).encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


def _gauss(*key: object) -> float:
    u1, u2 = max(_u(*key, 1), 1e-12), _u(*key, 2)
    return math.sqrt(-2 * math.log(u1)) * math.cos(2 * math.pi * u2)


def curve(cfg: Config, seed: int, step: int, *, phi_ids: frozenset[str], phi_shift: float, noise: float,
          structure: float = 1.0) -> float:
    """Validation BPB of a config on a seed at a step (see the module docstring).

    structure scales how much of a config's quality its levers explain: 1 as described, 0 none (the
    quality is then a hash of the config id with about the same spread: nothing for a model to learn).
    """
    levers = (0.22 * abs(math.log(cfg.lr / 3e-3)) + 0.12 * (96 - cfg.width) / 64 + 0.04 * abs(cfg.depth - 2)
              + 0.25 * cfg.dropout + 0.6 * cfg.warmup + 0.15 * cfg.wd)
    q = structure * levers + (1 - structure) * (0.2 + 0.15 * _gauss("h", cfg.config_id)) + 0.04 * _gauss("q", cfg.config_id)
    early = 1.6 + 0.25 * cfg.width / 96 - 0.12 * math.log(cfg.lr / 3e-3) + 0.1 * _gauss("e", cfg.config_id)
    shift = phi_shift if cfg.config_id in phi_ids else 0.0
    return (2.55 + q + shift + early * (100 / step) ** 0.6 + noise * _gauss("s", cfg.config_id, seed)
            + 0.2 * noise * _gauss("n", cfg.config_id, seed, step))


def tenth_table(seed: int = 0, *, phi_shift: float = 0.0, per_stratum: int = 64, extra_every: int = 9,
                noise: float = 0.02, families: Sequence[str] = ("attn", "jepa", "hybrid"),
                name: str = "synthetic_tenth", structure: float = 1.0) -> ReplayTable:
    """A tenth-preset table of 6 x per_stratum primary configs plus extras (384 + 96 at the defaults)."""
    from accelerators.phi_grid import phi_grid
    from igla_jax.execution.presets import PRESETS
    ps = PRESETS["tenth"]
    primary, extra = 165008596, (711347743, 1199612643)
    plan = curves.plan(ps.space, lambda f: phi_grid(f, ps.space), families=families, per_stratum=per_stratum,
                       extra_every=extra_every, primary_seed=primary, extra_seeds=extra, seed=seed)
    stratum = {p.config.config_id: p.stratum for p in plan}
    phi_ids = frozenset(c for c, s in stratum.items() if s == "phi")
    ladder = curves.ladder_for(ps.rungs)
    starts = (0,) + ladder[:-1]
    shapes = {curves.shape_key(p.config) for p in plan}

    def seg(c: Config, s: int, i: int) -> float:
        per_step = 0.0015 + 5.5e-5 * c.width * math.sqrt(c.depth)
        return (ladder[i] - starts[i]) * per_step * (1 + 0.05 * _gauss("t", c.config_id, s, i))

    return synthetic_table([(p.config, p.seed, p.seed_role) for p in plan], name=name, preset="tenth",
                           bpb=lambda c, s, step: curve(c, s, step, phi_ids=phi_ids, phi_shift=phi_shift, noise=noise,
                                                        structure=structure),
                           segment_s=seg, ladder=ladder, rungs=ps.rungs, primary_seed=primary,
                           eval_s=0.3, compile_s={k: 2.0 + 1.5 * _u("c", k) for k in sorted(shapes)},
                           stratum=lambda c: stratum[c.config_id], batch=ps.batch, context=ps.context)

