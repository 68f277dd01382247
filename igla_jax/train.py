"""Training: muP AdamW, a pure jitted train step, scan-chunked loops, divergence, honest BPB."""
from __future__ import annotations

import dataclasses
import functools
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from igla_jax import checkpoint as ckpt
from igla_jax.data import DROPOUT_STREAM, evaluate_bpb, get_batch, splits
from igla_jax.models import (ConfigError, ModelConfig, count_params, init_params, logits_fn,
                             loss_fn, traced_hparams, update_aux)
from igla_jax.models.mup import lr_mult_tree, wd_mult_tree

# Cosine decay ends at this fraction of the peak lr (nanoGPT's recipe).
MIN_LR_RATIO = 0.1
ADAM_EPS = 1e-8
# Steps fused into one compiled call: amortises dispatch without changing any step's arithmetic.
CHUNK = 32


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimiser, schedule and data settings of one trial."""
    # Defaults: the recipe measured best at the reference shape (attn 4 x 128, ctx 64, batch 12,
    # 2000 steps): 2.568 BPB vs 2.663 with lr 3e-3, beta2 0.99, warmup 0.02 (README, issue note).
    lr: float = 4e-3             # peak Adam lr (muP base lr; hidden matrices get lr / m)
    beta1: float = 0.9
    beta2: float = 0.95
    weight_decay: float = 0.1    # decoupled; scaled per muP role
    warmup_frac: float = 0.1
    total_steps: int = 2000      # lr-schedule horizon (a trial may stop earlier and resume)
    batch: int = 12
    seed: int = 42

    def __post_init__(self) -> None:
        def bad(field: str, why: str) -> ConfigError:
            return ConfigError(f"TrainConfig.{field}={getattr(self, field)!r}: {why}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise bad("lr", "must be a positive finite number")
        for f in ("beta1", "beta2"):
            if not 0.0 <= getattr(self, f) < 1.0:
                raise bad(f, "must lie in [0, 1)")
        if self.weight_decay < 0:
            raise bad("weight_decay", "must be >= 0")
        if not 0.0 <= self.warmup_frac < 1.0:
            raise bad("warmup_frac", "must lie in [0, 1)")
        if self.total_steps < 1:
            raise bad("total_steps", "must be >= 1")
        if self.batch < 1:
            raise bad("batch", "must be >= 1")

    @property
    def warmup_steps(self) -> int:
        return int(round(self.warmup_frac * self.total_steps))


@flax.struct.dataclass
class TrainState:
    """Everything a trial needs to continue bit-for-bit; `cfg` is static (part of the treedef): the
    model's `shape()`, while dropout and the jepa EMA beta live in `hparams` (traced)."""
    step: jax.Array
    params: Any
    opt_state: Any
    aux: Any
    hparams: dict[str, jax.Array]
    cfg: ModelConfig = flax.struct.field(pytree_node=False)


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


def hparams_of(tc: TrainConfig) -> dict[str, jax.Array]:
    f32 = lambda v: jnp.asarray(v, jnp.float32)
    return {"lr": f32(tc.lr), "beta1": f32(tc.beta1), "beta2": f32(tc.beta2),
            "wd": f32(tc.weight_decay), "warmup": f32(tc.warmup_steps),
            "total": f32(tc.total_steps), "seed": jnp.asarray(tc.seed, jnp.uint32)}


def init_state(cfg: ModelConfig, tc: TrainConfig) -> TrainState:
    """Fresh state: parameters from the trial seed, Adam moments at zero.

    The state keeps cfg.shape() (static) and cfg's dropout and ema_beta as traced hparams, so
    configs differing only in those share one compiled program and can train as one population.
    """
    params, aux = init_params(cfg, jax.random.PRNGKey(tc.seed))
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      opt_state=optax.scale_by_adam().init(params), aux=aux,
                      hparams={**hparams_of(tc), **traced_hparams(cfg)}, cfg=cfg.shape())


def lr_schedule(step: jax.Array, hp: dict[str, jax.Array]) -> jax.Array:
    """Linear warmup to the peak, then cosine decay to MIN_LR_RATIO of it at `total` steps."""
    s = step.astype(jnp.float32)
    warm = jnp.where(hp["warmup"] > 0, jnp.minimum(1.0, (s + 1.0) / jnp.maximum(hp["warmup"], 1.0)), 1.0)
    frac = jnp.clip((s - hp["warmup"]) / jnp.maximum(hp["total"] - hp["warmup"], 1.0), 0.0, 1.0)
    cos = MIN_LR_RATIO + (1.0 - MIN_LR_RATIO) * 0.5 * (1.0 + jnp.cos(jnp.pi * frac))
    return hp["lr"] * jnp.where(s < hp["warmup"], warm, cos)


def _apply_update(state: TrainState, grads: Any) -> tuple[Any, Any]:
    """AdamW with per-role muP lr and decoupled weight decay multipliers."""
    cfg, hp = state.cfg, state.hparams
    adam = optax.scale_by_adam(b1=hp["beta1"], b2=hp["beta2"], eps=ADAM_EPS)
    upd, opt_state = adam.update(grads, state.opt_state, state.params)
    lr_t = lr_schedule(state.step, hp)
    lr_m = lr_mult_tree(state.params, param=cfg.param, width=cfg.width, d_base=cfg.d_base)
    wd_m = wd_mult_tree(state.params, param=cfg.param, width=cfg.width, d_base=cfg.d_base)
    new = jax.tree_util.tree_map(
        lambda p, u, lm, wm: p - lr_t * lm * (u + hp["wd"] * wm * p) if wm else p - lr_t * lm * u,
        state.params, upd, lr_m, wd_m)
    return new, opt_state


def _step(state: TrainState, x_BxL: jax.Array, y_BxL: jax.Array) -> tuple[TrainState, dict]:
    cfg, hp = state.cfg, state.hparams
    # One program for every rate: the key is always derived; at rate 0 the model draws no bits.
    dkey = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(hp["seed"]), DROPOUT_STREAM), state.step)
    (_, metrics), grads = jax.value_and_grad(
        lambda p: loss_fn(cfg, p, state.aux, x_BxL, y_BxL, dkey, hp), has_aux=True)(state.params)
    params, opt_state = _apply_update(state, grads)
    aux = update_aux(cfg, state.aux, params, hp)
    new = state.replace(step=state.step + 1, params=params, opt_state=opt_state, aux=aux)
    return new, metrics


@functools.partial(jax.jit, donate_argnums=(0,))
def train_step(state: TrainState, batch: tuple[jax.Array, jax.Array]) -> tuple[TrainState, dict]:
    """One optimiser step on an explicit batch (x_BxL, y_BxL); pure, jitted once per model shape."""
    return _step(state, *batch)


def _chunk(state: TrainState, train_N: jax.Array, end: jax.Array, batch: int) -> tuple[TrainState, jax.Array]:
    """Up to CHUNK steps, each on get_batch(seed, step); steps at or past `end` are no-ops.

    Every step of every trial runs through this one compiled body, so a run split at any step
    and resumed from a checkpoint reproduces the uninterrupted run exactly.
    """
    def body(st: TrainState, _):
        def do(s: TrainState):
            x, y = get_batch(train_N, s.hparams["seed"], s.step, batch=batch, context=s.cfg.context)
            s2, m = _step(s, x, y)
            return s2, m["ce_bits"], m["loss"]
        active = st.step < end
        st2, bits, loss = jax.lax.cond(active, do, lambda s: (s, jnp.float32(0), jnp.float32(0)), st)
        return st2, jnp.stack([bits, loss, active.astype(jnp.float32)])
    return jax.lax.scan(body, state, None, length=CHUNK)


train_chunk = jax.jit(_chunk, static_argnames=("batch",), donate_argnums=(0,))
population_chunk = jax.jit(jax.vmap(_chunk, in_axes=(0, None, None, None)), static_argnums=(3,),
                           donate_argnums=(0,))


@functools.partial(jax.jit, static_argnums=(0,))
def _eval_logits(cfg: ModelConfig, params: Any, x_BxL: jax.Array) -> jax.Array:
    return logits_fn(cfg, params, x_BxL)


def validation_bpb(state: TrainState, split: str = "val") -> float:
    """BPB of the state's parameters at its current step on `split` (default validation; never a running minimum)."""
    return evaluate_bpb(lambda x: _eval_logits(state.cfg, state.params, x), context=state.cfg.context, split=split)


def _summarise(trace: np.ndarray) -> tuple[bool, float]:
    """(finite, mean train bits) over the active steps of chunk traces [..., CHUNK, 3]."""
    active = trace[..., 2] > 0
    finite = bool(np.all(np.isfinite(trace[..., 1][active])))
    bits = float(np.mean(trace[..., 0][active])) if active.any() else float("nan")
    return finite, bits


ProgressFn = Callable[[int, int, float], None]   # (step, to_step, train_bits)


def train_state_to(state: TrainState, train_cfg: TrainConfig, to_step: int,
                   progress: ProgressFn | None = None) -> tuple[TrainState, str, float]:
    """Advance one state to `to_step`; returns (state, status, last train bits)."""
    train_N = jnp.asarray(splits()[0])
    end = jnp.asarray(to_step, jnp.int32)
    bits = float("nan")
    while int(state.step) < to_step:
        state, trace = train_chunk(state, train_N, end, batch=train_cfg.batch)
        finite, bits = _summarise(np.asarray(trace))
        if not finite:
            return state, "diverged", bits
        if progress is not None:
            progress(int(state.step), to_step, bits)
    return state, "ok", bits


def run_trial(model_cfg: ModelConfig, train_cfg: TrainConfig, *, to_step: int,
              from_checkpoint: str | Path | None = None, save_checkpoint: str | Path | None = None,
              progress: ProgressFn | None = None, eval_test: bool = False) -> TrialResult:
    """Train from the checkpoint's step (or 0) to `to_step`, then measure validation BPB there.

    eval_test also measures the test half (for victory runs only: nothing that selects asks).
    A NaN or inf training loss ends the trial with status "diverged" (val_bpb NaN); it never raises.
    """
    if to_step < 1:
        raise ConfigError(f"to_step={to_step!r}: must be >= 1")
    state = init_state(model_cfg, train_cfg)
    if from_checkpoint is not None:
        state = ckpt.restore(from_checkpoint, state, model_cfg, train_cfg)
    start = int(state.step)
    if start > to_step:
        raise ConfigError(f"checkpoint {from_checkpoint} is at step {start}, past to_step={to_step}")
    t0 = time.perf_counter()
    state, status, bits = train_state_to(state, train_cfg, to_step, progress)
    jax.block_until_ready(state.params)
    wall = time.perf_counter() - t0
    tokens = (int(state.step) - start) * train_cfg.batch * model_cfg.context
    n = count_params(state.params)
    if status == "diverged":
        return TrialResult(float("nan"), "diverged", int(state.step), n, tokens / max(wall, 1e-9), wall, bits)
    bpb = validation_bpb(state)
    test = validation_bpb(state, "test") if eval_test else None
    if save_checkpoint is not None:
        ckpt.save(save_checkpoint, state, model_cfg, train_cfg)
    return TrialResult(bpb, "ok", int(state.step), n, tokens / max(wall, 1e-9), wall, bits, test)


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
    jepa EMA beta) as one vmapped program.

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
    from_checkpoints = from_checkpoints or [None] * n
    save_checkpoints = save_checkpoints or [None] * n
    states = []
    for mc, tc, src in zip(mcs, train_cfgs, from_checkpoints):
        st = init_state(mc, tc)
        states.append(ckpt.restore(src, st, mc, tc) if src is not None else st)
    starts = [int(s.step) for s in states]
    if max(starts) > to_step:
        raise ConfigError(f"run_population: a checkpoint is past to_step={to_step} (steps {starts})")
    pop = stack_states(states)
    train_N = jnp.asarray(splits()[0])
    end = jnp.asarray(to_step, jnp.int32)
    alive = np.ones(n, bool)
    t0 = time.perf_counter()
    bits = np.full(n, np.nan)
    while int(jnp.min(pop.step)) < to_step:
        pop, trace = population_chunk(pop, train_N, end, batch)
        tr = np.asarray(trace)
        for i in range(n):
            if alive[i]:
                finite, bits[i] = _summarise(tr[i])
                alive[i] = finite
        if progress is not None:
            progress(int(jnp.min(pop.step)), to_step, float(np.nanmean(bits)))
        if not alive.any():
            break
    jax.block_until_ready(pop.params)
    wall = time.perf_counter() - t0
    results = []
    for i, tc in enumerate(train_cfgs):
        st = unstack_state(pop, i)
        nparams = count_params(st.params)
        tps = (to_step - starts[i]) * batch * model_cfg.context / max(wall, 1e-9) / n
        if not alive[i]:
            results.append(TrialResult(float("nan"), "diverged", int(st.step), nparams, tps, wall, float(bits[i])))
            continue
        if save_checkpoints[i] is not None:
            ckpt.save(save_checkpoints[i], st, mcs[i], tc)
        test = validation_bpb(st, "test") if eval_tests is not None and eval_tests[i] else None
        results.append(TrialResult(validation_bpb(st), "ok", int(st.step), nparams, tps, wall, float(bits[i]), test))
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
