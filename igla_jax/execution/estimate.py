"""A live race's wall time on this machine, estimated from a short measured calibration.

`calibrate` times one scan chunk (CHUNK steps) of a few shapes of the preset's space (compile
measured apart, ahead of time); `fill_step_s` extends those to every shape by a per-step FLOP
count; `estimate_race` combines them with the race's planned steps (synchronous-SHA count, as
`race_runner.planned_steps`) under a uniform shape mix. All but `calibrate` are pure.
"""
from __future__ import annotations

import dataclasses
import math
import time
from typing import Mapping

from igla_jax.search.race_types import RaceConfig
from igla_jax.search.search_space import SearchSpace

# "A few hours": past this the CLI says plainly that the preset is sized for an accelerator and
# points to --preset quick and --budget. A message threshold only, never a verdict constant.
LONG_RACE_S = 3 * 3600.0
# Calibration time the CLI aims at (s); the smallest shape of each family is always measured.
CALIBRATION_BUDGET_S = 30.0

ShapeKey = tuple[str, int, int]   # (family, width, depth): what fixes a compiled program within a preset


@dataclasses.dataclass(frozen=True)
class Calibration:
    """Measured seconds per optimiser step and compile seconds of some shapes; FLOPs of all."""
    step_s: dict[ShapeKey, float]
    compile_s: dict[ShapeKey, float]
    flops: dict[ShapeKey, float]       # per optimiser step, every shape of the mix
    eval_tokens: int                   # tokens one validation evaluation runs forward
    tokens_per_step: int               # batch x context
    wall_s: float


@dataclasses.dataclass(frozen=True)
class RaceEstimate:
    total_s: float        # uniform shape mix: train + evaluation + compile
    high_s: float         # the same with every promoted / confirmation step on the slowest shape
    train_s: float
    eval_s: float
    compile_s: float
    steps: int
    evaluations: int
    mean_step_s: float
    min_step_s: float
    max_step_s: float


def shapes_of(space: SearchSpace, families: tuple[str, ...]) -> list[ShapeKey]:
    """Every (family, width, depth) a race over `space` can train."""
    return [(f, w, d) for f in families for w in space.width for d in space.depth]


def step_flops(n_params: int, n_frozen: int, *, width: int, depth: int, context: int, batch: int) -> float:
    """Per-step FLOPs: 6 N T for the trained weights, 2 N T for a frozen target's forward, 12 L d depth T for attention."""
    tokens = batch * context
    return float(6 * n_params * tokens + 2 * n_frozen * tokens + 12 * depth * context * width * tokens)


def fill_step_s(measured: Mapping[ShapeKey, float], flops: Mapping[ShapeKey, float]) -> dict[ShapeKey, float]:
    """Seconds per step of every shape in `flops` (which covers the measured ones): t = c + b_family x FLOPs.

    The per-step overhead c comes from the families with two or more measured shapes (mean of their
    least-squares intercepts, clipped to [0, smallest measured time]), else 0, which over-estimates
    large shapes. Each family's slope b is its measured points' mean (t - c) / FLOPs; a family with
    none takes the mean slope of the others. Measured shapes keep their measured time.
    """
    if not measured:
        raise ValueError("fill_step_s: no measured shape")
    fams = sorted({k[0] for k in flops} | {k[0] for k in measured})
    by_fam = {f: [(flops[k], t) for k, t in measured.items() if k[0] == f] for f in fams}
    intercepts = []
    for pts in by_fam.values():
        xs = [x for x, _ in pts]
        if len(pts) >= 2 and max(xs) > min(xs):
            mx, my = sum(xs) / len(pts), sum(t for _, t in pts) / len(pts)
            slope = sum((x - mx) * (t - my) for x, t in pts) / sum((x - mx) ** 2 for x in xs)
            intercepts.append(my - slope * mx)
    c = min(max(0.0, sum(intercepts) / len(intercepts)), min(measured.values())) if intercepts else 0.0
    slopes = {f: sum((t - c) / x for x, t in pts) / len(pts) for f, pts in by_fam.items() if pts}
    mean_slope = sum(slopes.values()) / len(slopes)
    return {k: measured[k] if k in measured else c + slopes.get(k[0], mean_slope) * x for k, x in flops.items()}


def estimate_race(cfg: RaceConfig, step_s: Mapping[ShapeKey, float], compile_s: Mapping[ShapeKey, float],
                  eval_s: Mapping[ShapeKey, float] | None = None) -> RaceEstimate:
    """Wall-time estimate of a race whose trials draw their shape uniformly from `step_s`'s keys.

    Steps per rung are the synchronous-SHA count of `race_runner.planned_steps` (max_trials // eta^k
    trials at rung k, each the gap to the previous rung), plus, with confirmation, one run to the
    last rung per victory seed and one reproduction. Evaluations: one per result, two (validation
    and test) per confirmation. Compile: each shape is compiled once if some trial draws it, with
    trials split evenly over the families (shape drawn uniformly within its family). Missing
    compile or eval entries count as zero.
    """
    eval_s = eval_s or {}
    trials = cfg.max_trials if cfg.max_trials is not None else cfg.eta ** len(cfg.rungs)  # uncapped: the default count
    keys = list(step_s)
    mean = sum(step_s.values()) / len(keys)
    slowest = max(step_s.values())
    first, prev, steps, evals = 0, 0, 0, 0
    for k, r in enumerate(cfg.rungs):
        n = max(1, trials // cfg.eta ** k)
        steps += n * (r - prev)
        evals += n
        first = steps if k == 0 else first
        prev = r
    if cfg.confirm:
        steps += (len(cfg.victory_seeds) + 1) * cfg.rungs[-1]
        evals += 2 * len(cfg.victory_seeds) + 1
    fams = sorted({k[0] for k in keys})
    per_fam = {f: [k for k in keys if k[0] == f] for f in fams}
    draws = trials / len(fams)
    comp = sum(compile_s.get(k, 0.0) * (1.0 - (1.0 - 1.0 / len(per_fam[k[0]])) ** draws) for k in keys)
    ev = evals * sum(eval_s.get(k, 0.0) for k in keys) / len(keys)
    train = steps * mean
    high = first * mean + (steps - first) * slowest
    return RaceEstimate(total_s=train + ev + comp, high_s=high + ev + comp, train_s=train, eval_s=ev,
                        compile_s=comp, steps=steps, evaluations=evals, mean_step_s=mean,
                        min_step_s=min(step_s.values()), max_step_s=slowest)


def eval_s_from_steps(step_s: Mapping[ShapeKey, float], *, eval_tokens: int, tokens_per_step: int) -> dict[ShapeKey, float]:
    """One evaluation's seconds per shape: a forward pass is about a third of a training step's work per token."""
    return {k: t * eval_tokens / tokens_per_step / 3.0 for k, t in step_s.items()}


def _plan(space: SearchSpace, families: tuple[str, ...]) -> list[ShapeKey]:
    """Calibration order: each family's smallest shape, then each one's middle, then each one's largest."""
    lo, hi = (space.width[0], space.depth[0]), (space.width[-1], space.depth[-1])
    mid = (space.width[len(space.width) // 2], space.depth[len(space.depth) // 2])
    order = [(f, *s) for s in (lo, mid, hi) for f in families]
    return list(dict.fromkeys(order))


def calibrate(space: SearchSpace, *, families: tuple[str, ...], context: int, batch: int,
              budget_s: float = CALIBRATION_BUDGET_S, chunks: int = 1) -> Calibration:
    """Times `chunks` scan chunks per shape (compile timed apart, ahead of time) within about `budget_s`.

    Each family's smallest shape is always measured; a further shape only when its predicted
    compile + run time still fits the budget. The shapes compiled here are the race's own, so a
    persistent compile cache (if enabled) also serves the race.
    """
    import jax
    import jax.numpy as jnp
    import numpy as np

    from igla_jax.training.data import eval_windows, splits
    from igla_jax.training.models import ModelConfig, count_params, init_params
    from igla_jax.training.step import CHUNK, TrainConfig, init_state, train_chunk

    t0 = time.perf_counter()
    cfgs = {k: ModelConfig(family=k[0], width=k[1], depth=k[2], context=context, head_dim=space.head_dim)
            for k in shapes_of(space, families)}
    flops = {}
    for k, mc in cfgs.items():
        params, aux = jax.eval_shape(lambda mc=mc: init_params(mc, jax.random.PRNGKey(0)))
        flops[k] = step_flops(count_params(params), sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(aux)),
                              width=k[1], depth=k[2], context=context, batch=batch)
    train_N = jnp.asarray(splits()[0])
    end = jnp.asarray(np.iinfo(np.int32).max, jnp.int32)
    step_s: dict[ShapeKey, float] = {}
    compile_s: dict[ShapeKey, float] = {}
    for i, k in enumerate(_plan(space, families)):
        if i >= len(families):   # past the compulsory smallest shapes: only what fits
            guess = (sum(compile_s.values()) / len(compile_s)
                     + chunks * CHUNK * fill_step_s(step_s, flops)[k])
            if time.perf_counter() - t0 + guess > budget_s:
                continue
        state = init_state(cfgs[k], TrainConfig(batch=batch, total_steps=max(CHUNK * (chunks + 1), 1000)))
        t = time.perf_counter()
        run = train_chunk.lower(state, train_N, end, batch=batch).compile()
        compile_s[k] = time.perf_counter() - t
        t = time.perf_counter()
        for _ in range(chunks):
            state, trace = run(state, train_N, end)
        jax.block_until_ready(trace)
        step_s[k] = (time.perf_counter() - t) / (chunks * CHUNK)
    x, _, _ = eval_windows(context, "val")
    return Calibration(step_s=step_s, compile_s=compile_s, flops=flops, eval_tokens=int(x.size),
                       tokens_per_step=batch * context, wall_s=time.perf_counter() - t0)


def estimate_from(cal: Calibration, cfg: RaceConfig) -> RaceEstimate:
    """`estimate_race` on a calibration: unmeasured shapes filled by FLOPs, compile by the family's mean."""
    step = fill_step_s(cal.step_s, cal.flops)
    fam_compile = {f: [v for k, v in cal.compile_s.items() if k[0] == f] for f in {k[0] for k in step}}
    every = list(cal.compile_s.values())
    comp = {k: (sum(fam_compile[k[0]]) / len(fam_compile[k[0]]) if fam_compile[k[0]] else sum(every) / len(every))
            for k in step}
    comp.update(cal.compile_s)
    ev = eval_s_from_steps(step, eval_tokens=cal.eval_tokens, tokens_per_step=cal.tokens_per_step)
    return estimate_race(cfg, step, comp, ev)


def _hms(s: float) -> str:
    if not math.isfinite(s):
        return "?"
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


def estimate_lines(est: RaceEstimate, cal: Calibration, *, preset: str, backend: str) -> list[str]:
    """The lines the CLI prints before a race: the estimate, and plain advice when it is long."""
    lines = [f"estimated wall time of this race on this machine ({backend}): about {_hms(est.total_s)} "
             f"(up to {_hms(est.high_s)} if the survivors are the slowest shapes): {est.steps:,} steps at "
             f"{est.mean_step_s * 1e3:.0f} ms/step on average ({est.min_step_s * 1e3:.0f}-{est.max_step_s * 1e3:.0f} "
             f"by shape), {est.evaluations} evaluations ~{_hms(est.eval_s)}, compiling ~{_hms(est.compile_s)}; "
             f"calibrated on {len(cal.step_s)} of {len(cal.flops)} shapes in {cal.wall_s:.0f} s "
             "(a busy machine measures slow)"]
    if est.total_s > LONG_RACE_S and backend == "cpu":
        lines.append(f"that is more than {_hms(LONG_RACE_S)}: preset {preset!r} is sized for an accelerator. "
                     "On a CPU try --preset quick (minutes), or --budget 2h for an anytime race of two hours "
                     "that ends with a confirmed champion. Proceeding as asked.")
    return lines


def confirming_or_done(out) -> bool:
    """Whether the race recorded in `out`'s ledger has reached its confirmation runs (or finished)."""
    from pathlib import Path

    from igla_jax.evidence.ledger import read_ledger
    from igla_jax.evidence.ledger_row import LedgerError
    path = Path(out) / "ledger.jsonl"
    try:
        return path.is_file() and any(r.get("status") == "confirmed" for r in read_ledger(path).rows)
    except (LedgerError, OSError):
        return False   # the race itself reports a bad ledger


def race_estimate_lines(space: SearchSpace, cfg: RaceConfig, *, preset: str, context: int, batch: int,
                        budget_s: float = CALIBRATION_BUDGET_S) -> list[str]:
    """Calibrates on this machine and returns the estimate lines for a race over `space`."""
    import jax
    cal = calibrate(space, families=tuple(cfg.families), context=context, batch=batch, budget_s=budget_s)
    return estimate_lines(estimate_from(cal, cfg), cal, preset=preset, backend=jax.default_backend())
