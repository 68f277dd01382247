"""Training loops: one trial to a step (from a checkpoint, with divergence and honest BPB), or a
population of same-shape trials as one vmapped program. The step itself is `igla_jax.training.step`."""
from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from igla_jax.training import checkpoint as ckpt
from igla_jax.training.data import EVAL_BATCH, splits
from igla_jax.training.models import ConfigError, ModelConfig, count_params
from igla_jax.training.programs import compiled, ensure
from igla_jax.training.step import (TrainConfig, TrainState, _eval_logits, _summarise, init_state, population_chunk,
                                    train_chunk, validation_bpb)


@dataclasses.dataclass(frozen=True)
class TrialResult:
    val_bpb: float
    status: str                  # "ok" or "diverged"
    step: int
    params: int
    tokens_per_s: float
    wall_s: float
    train_bits: float = float("nan")   # mean training cross-entropy over the last chunk, bits
    test_bpb: float | None = None      # test-half BPB, measured only when asked (victory runs)
    train_curve: tuple[float, ...] = ()  # mean training bits of every chunk of CHUNK steps this call trained
    # V7 only: candidate tokens scored by forward passes in this call (never trained on), and the
    # fractions of candidates / of trained sequences below the running quantile since step 0
    candidate_tokens: int = 0
    learned_candidates: float = float("nan")
    learned_trained: float = float("nan")
    # where the call's time went (issue 23): compiling programs (training and evaluation, 0 when this process
    # had them), training steps (wall_s minus the training program's compile) and evaluating (compile excluded)
    compile_s: float = 0.0
    train_s: float = 0.0
    eval_s: float = 0.0
    # seconds building the starting state before wall_s began (fresh parameters, then the checkpoint's values):
    # on a shape's first use in a process, mostly JAX compiling the initialisers' operations one by one
    init_s: float = 0.0


ProgressFn = Callable[[int, int, float], None]   # (step, to_step, train_bits)


def train_state_to(state: TrainState, train_cfg: TrainConfig, to_step: int,
                   progress: ProgressFn | None = None,
                   curve: list[float] | None = None,
                   timing: dict[str, float] | None = None) -> tuple[TrainState, str, float]:
    """Advance one state to `to_step`; returns (state, status, last train bits).

    curve, when given, receives the mean training bits of every chunk trained (the learning curve); timing
    gains the seconds spent compiling the training program ("compile_s").
    """
    train_N = jnp.asarray(splits()[0])
    end = jnp.asarray(to_step, jnp.int32)
    bits = float("nan")
    chunk = None
    while int(state.step) < to_step:
        if chunk is None:   # compiled once per shape and process, timed apart (igla_jax.training.programs)
            chunk, comp = compiled("train_chunk", train_chunk, state, train_N, end, batch=train_cfg.batch)
            if timing is not None:
                timing["compile_s"] = timing.get("compile_s", 0.0) + comp
        state, trace = chunk(state, train_N, end)
        finite, bits = _summarise(np.asarray(trace))
        if curve is not None:
            curve.append(bits)
        if not finite:
            return state, "diverged", bits
        if progress is not None:
            progress(int(state.step), to_step, bits)
    return state, "ok", bits


def warm_programs(model_cfg: ModelConfig, train_cfg: TrainConfig) -> float:
    """Prepares a shape's first trial now, in this thread, without training: builds a fresh state eagerly (which
    compiles and caches the initialisers' operations) and compiles the training chunk and the evaluation program;
    returns the seconds spent (the state's build, nearly nothing once its operations are cached, plus the
    compiles this call made: 0 when this process already had them or another thread compiled them meanwhile). A background thread calls it
    with the next configs while a trial trains (`igla_jax.execution.ahead`); the trial's own `compiled` call then
    finds the program (or waits for it) instead of compiling, and the program is the same either way."""
    t0 = time.perf_counter()
    state = init_state(model_cfg, train_cfg)   # eagerly, as a trial does: its operations' compiles are then cached
    jax.block_until_ready(state.params)
    init_s = time.perf_counter() - t0
    train_N = splits()[0]
    n_sds = jax.ShapeDtypeStruct(train_N.shape, jnp.asarray(train_N[:1]).dtype)
    end = jax.ShapeDtypeStruct((), jnp.int32)
    return (init_s + ensure("train_chunk", train_chunk, state, n_sds, end, batch=train_cfg.batch)
            + ensure("eval_logits", _eval_logits, state.cfg, state.params,
                     jax.ShapeDtypeStruct((EVAL_BATCH, state.cfg.context), jnp.int32)))


def run_trial(model_cfg: ModelConfig, train_cfg: TrainConfig, *, to_step: int,
              from_checkpoint: str | Path | None = None, save_checkpoint: str | Path | None = None,
              progress: ProgressFn | None = None, eval_test: bool = False) -> TrialResult:
    """Train from the checkpoint's step (or 0) to `to_step`, then measure validation BPB there.

    eval_test also measures the test half (for victory runs only: nothing that selects asks).
    A NaN or inf training loss ends the trial with status "diverged" (val_bpb NaN); it never raises.
    """
    if to_step < 1:
        raise ConfigError(f"to_step={to_step!r}: must be >= 1")
    t_init = time.perf_counter()
    state = init_state(model_cfg, train_cfg)
    if from_checkpoint is not None:
        state = ckpt.restore(from_checkpoint, state, model_cfg, train_cfg)
    start = int(state.step)
    init_s = time.perf_counter() - t_init
    if start > to_step:
        raise ConfigError(f"checkpoint {from_checkpoint} is at step {start}, past to_step={to_step}")
    t0 = time.perf_counter()
    curve: list[float] = []
    timing: dict[str, float] = {}
    state, status, bits = train_state_to(state, train_cfg, to_step, progress, curve, timing)
    tc_curve = tuple(round(float(b), 6) for b in curve)
    jax.block_until_ready(state.params)
    wall = time.perf_counter() - t0
    train_s = wall - timing.get("compile_s", 0.0)
    tokens = (int(state.step) - start) * train_cfg.batch * model_cfg.context
    n = count_params(state.params)
    v7 = curriculum_fields(state, int(state.step) - start, train_cfg.batch)
    if status == "diverged":
        return TrialResult(float("nan"), "diverged", int(state.step), n, tokens / max(wall, 1e-9), wall, bits,
                           train_curve=tc_curve, compile_s=timing.get("compile_s", 0.0), train_s=train_s,
                           init_s=init_s, **v7)
    bpb = validation_bpb(state, timing=timing)
    test = validation_bpb(state, "test", timing=timing) if eval_test else None
    if save_checkpoint is not None:
        ckpt.save(save_checkpoint, state, model_cfg, train_cfg)
    return TrialResult(bpb, "ok", int(state.step), n, tokens / max(wall, 1e-9), wall, bits, test, tc_curve,
                       compile_s=timing.get("compile_s", 0.0), train_s=train_s, eval_s=timing.get("eval_s", 0.0),
                       init_s=init_s, **v7)


def curriculum_fields(state: TrainState, steps: int, batch: int) -> dict[str, Any]:
    """TrialResult's V7 fields for a state that trained `steps` steps in this call ({} without a curriculum)."""
    cur = state.curriculum
    if cur is None:
        return {}
    seen = max(int(cur.seen), 1)
    n_cand = cur.spec.factor * batch
    return {"candidate_tokens": steps * n_cand * state.cfg.context,
            "learned_candidates": int(cur.below_cand) / (seen * n_cand),
            "learned_trained": int(cur.below_kept) / (seen * batch)}


def stack_states(states: list[TrainState]) -> TrainState:
    """Stacks same-shape states along a new leading trial axis."""
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *states)


def unstack_state(pop: TrainState, i: int) -> TrainState:
    return jax.tree_util.tree_map(lambda x: x[i], pop)


def run_population(model_cfg: ModelConfig | Sequence[ModelConfig], train_cfgs: list[TrainConfig], *, to_step: int,
                   from_checkpoints: list[str | Path | None] | None = None,
                   save_checkpoints: list[str | Path | None] | None = None,
                   progress: ProgressFn | None = None,
                   eval_tests: list[bool] | None = None) -> list[TrialResult]:
    """Trains same-shape trials (differing in lr, betas, wd, warmup, horizon, seed, dropout or the
    jepa EMA beta; all with the same curriculum setting) as one vmapped program.

    model_cfg: one config for all, or one per trial whose `shape()` agree (dropout and ema_beta
    are traced). Each trial sees exactly the batches and updates it would see alone; a trial that
    diverges is reported "diverged" while the others go on (its NaNs stay in its own slice).
    """
    n = len(train_cfgs)
    if n == 0:
        return []
    mcs = [model_cfg] * n if isinstance(model_cfg, ModelConfig) else list(model_cfg)
    if len(mcs) != n:
        raise ConfigError(f"run_population: {len(mcs)} model configs for {n} train configs")
    if len({m.shape() for m in mcs}) != 1:
        raise ConfigError("run_population: trials differ in model shape "
                          f"{sorted({str(m.shape()) for m in mcs})}; only dropout and ema_beta may differ")
    model_cfg = mcs[0]
    batches = {tc.batch for tc in train_cfgs}
    if len(batches) != 1:
        raise ConfigError(f"run_population: trials differ in batch size {sorted(batches)}; shapes must match")
    batch = batches.pop()
    if len({tc.curriculum for tc in train_cfgs}) != 1:
        raise ConfigError("run_population: trials differ in the curriculum setting; it is static (one program each)")
    from_checkpoints = from_checkpoints or [None] * n
    save_checkpoints = save_checkpoints or [None] * n
    states = []
    t_init = time.perf_counter()
    for mc, tc, src in zip(mcs, train_cfgs, from_checkpoints):
        st = init_state(mc, tc)
        states.append(ckpt.restore(src, st, mc, tc) if src is not None else st)
    starts = [int(s.step) for s in states]
    init_s = time.perf_counter() - t_init
    if max(starts) > to_step:
        raise ConfigError(f"run_population: a checkpoint is past to_step={to_step} (steps {starts})")
    pop = stack_states(states)
    train_N = jnp.asarray(splits()[0])
    end = jnp.asarray(to_step, jnp.int32)
    alive = np.ones(n, bool)
    t0 = time.perf_counter()
    bits = np.full(n, np.nan)
    curves: list[list[float]] = [[] for _ in range(n)]
    chunk, comp = compiled("population_chunk", population_chunk, pop, train_N, end, batch)
    while int(jnp.min(pop.step)) < to_step:
        pop, trace = chunk(pop, train_N, end)
        tr = np.asarray(trace)
        for i in range(n):
            if alive[i] and (tr[i][..., 2] > 0).any():
                finite, bits[i] = _summarise(tr[i])
                curves[i].append(round(float(bits[i]), 6))
                alive[i] = finite
        if progress is not None:
            progress(int(jnp.min(pop.step)), to_step, float(np.nanmean(bits)))
        if not alive.any():
            break
    jax.block_until_ready(pop.params)
    wall = time.perf_counter() - t0
    # the group's compile and training seconds are split evenly over its members, so a ledger's sums are right
    share = {"compile_s": comp / n, "train_s": (wall - comp) / n, "init_s": init_s / n}
    results = []
    for i, tc in enumerate(train_cfgs):
        st = unstack_state(pop, i)
        nparams = count_params(st.params)
        tps = (to_step - starts[i]) * batch * model_cfg.context / max(wall, 1e-9) / n
        v7 = curriculum_fields(st, int(st.step) - starts[i], batch)
        if not alive[i]:
            results.append(TrialResult(float("nan"), "diverged", int(st.step), nparams, tps, wall, float(bits[i]),
                                       train_curve=tuple(curves[i]), **share, **v7))
            continue
        if save_checkpoints[i] is not None:
            ckpt.save(save_checkpoints[i], st, mcs[i], tc)
        timing: dict[str, float] = {}
        test = validation_bpb(st, "test", timing=timing) if eval_tests is not None and eval_tests[i] else None
        val = validation_bpb(st, timing=timing)
        results.append(TrialResult(val, "ok", int(st.step), nparams, tps, wall, float(bits[i]), test,
                                   tuple(curves[i]), compile_s=share["compile_s"] + timing.get("compile_s", 0.0),
                                   train_s=share["train_s"], eval_s=timing.get("eval_s", 0.0), **v7))
    return results


def population_pays(model_cfg: ModelConfig, n_trials: int, *, backend: str | None = None) -> bool:
    """Whether to train n same-shape trials as one vmapped population rather than one by one.

    Documented rule (measured by `python -m experiments.bench_throughput`): on an accelerator a
    population of >= 2 pays (REFERENCE.md section 8: 64 vmapped trials at 7.7 M tokens/s on one
    H100); on this 2-core CPU the vmapped program measured 1.0-1.1x of the scan-chunked one-by-one
    loop at the muP proxy shape, inside noise, so the executor keeps to one by one there and a
    population never makes the race slower. IGLA_POPULATION=always|never overrides the rule.
    """
    forced = os.environ.get("IGLA_POPULATION", "auto")
    if forced not in ("auto", "always", "never"):
        raise ConfigError(f"IGLA_POPULATION={forced!r}: choose auto, always or never")
    if n_trials < 2 or forced == "never":
        return False
    if forced == "always":
        return True
    return (backend or jax.default_backend()) != "cpu"
