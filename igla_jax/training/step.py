"""The train step: muP AdamW, a pure jitted step, the scan chunk every step runs through, V7's
curriculum selection, honest validation BPB. The loops that use them are `igla_jax.training.train`."""
from __future__ import annotations

import dataclasses
import functools
import math
import time
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from igla_jax.training.data import DROPOUT_STREAM, EVAL_BATCH, evaluate_bpb, get_batch, token_bits
from igla_jax.training.models import (ConfigError, ModelConfig, init_params, logits_fn, loss_fn, traced_hparams,
                                      update_aux)
from igla_jax.training.models.mup import lr_mult_tree, wd_mult_tree
from igla_jax.training.programs import compiled

# Cosine decay ends at this fraction of the peak lr (nanoGPT's recipe).
MIN_LR_RATIO = 0.1
ADAM_EPS = 1e-8
# Steps fused into one compiled call: amortises dispatch without changing any step's arithmetic.
CHUNK = 32
# V7: decay of the running quantile, an EMA of each step's candidate-batch quantile (about the
# last 10 steps). A design constant fixed before any curriculum result existed; the candidate
# factor and the quantile itself are pre-registered (curriculum_candidate_factor, _quantile).
CURRICULUM_EMA = 0.9


@dataclasses.dataclass(frozen=True)
class CurriculumConfig:
    """V7's static settings: factor x batch candidates per step, the running `quantile`, its EMA decay."""
    factor: int
    quantile: float
    ema: float = CURRICULUM_EMA

    def __post_init__(self) -> None:
        if isinstance(self.factor, bool) or not isinstance(self.factor, int) or self.factor < 2:
            raise ConfigError(f"CurriculumConfig.factor={self.factor!r}: must be an integer >= 2")
        if not 0.0 < self.quantile < 1.0:
            raise ConfigError(f"CurriculumConfig.quantile={self.quantile!r}: must lie in (0, 1)")
        if not 0.0 <= self.ema < 1.0:
            raise ConfigError(f"CurriculumConfig.ema={self.ema!r}: must lie in [0, 1)")

    @classmethod
    def from_prereg(cls, prereg: Any) -> "CurriculumConfig":
        """The pre-registered factor and quantile (igla_jax.evidence.prereg.load_prereg())."""
        return cls(int(prereg.curriculum_candidate_factor), float(prereg.curriculum_quantile))


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
    curriculum: CurriculumConfig | None = None   # V7 online curriculum (None: off, the default program)

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
        if self.curriculum is not None and not isinstance(self.curriculum, CurriculumConfig):
            raise bad("curriculum", "must be a CurriculumConfig or None")

    @property
    def warmup_steps(self) -> int:
        return int(round(self.warmup_frac * self.total_steps))


@flax.struct.dataclass
class CurriculumState:
    """V7 selection state (see `curriculum_select`); `spec` is static, so V7 is its own compiled program."""
    q: jax.Array            # running quantile of candidate losses, bits per token (unused before step 1)
    seen: jax.Array         # steps selected so far
    below_cand: jax.Array   # candidates below the threshold ("already learned"), summed over steps
    below_kept: jax.Array   # trained sequences below the threshold, summed over steps
    spec: CurriculumConfig = flax.struct.field(pytree_node=False)


@flax.struct.dataclass
class TrainState:
    """Everything a trial needs to continue bit-for-bit; `cfg` is static (part of the treedef): the
    model's `shape()`, while dropout and the jepa EMA beta live in `hparams` (traced). `curriculum`
    is None (no leaves: the default program) or V7's CurriculumState."""
    step: jax.Array
    params: Any
    opt_state: Any
    aux: Any
    hparams: dict[str, jax.Array]
    cfg: ModelConfig = flax.struct.field(pytree_node=False)
    curriculum: CurriculumState | None = None


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
    cur = None
    if tc.curriculum is not None:
        zero = lambda: jnp.zeros((), jnp.int32)  # noqa: E731  (distinct buffers: the state is donated)
        cur = CurriculumState(q=jnp.zeros((), jnp.float32), seen=zero(), below_cand=zero(), below_kept=zero(),
                              spec=tc.curriculum)
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      opt_state=optax.scale_by_adam().init(params), aux=aux,
                      hparams={**hparams_of(tc), **traced_hparams(cfg)}, cfg=cfg.shape(), curriculum=cur)


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


def curriculum_select(state: TrainState, train_N: jax.Array, batch: int
                      ) -> tuple[jax.Array, jax.Array, CurriculumState, jax.Array]:
    """V7 online curriculum: the `batch` training sequences of this step, chosen from factor x batch candidates.

    Candidates: get_batch(seed, step) with factor x batch windows, from the training split only
    (train_N; no held-out byte is ever read). Each is scored by one eval-mode forward pass of the
    current parameters (no dropout; for jepa the LM cross-entropy, the quantity BPB measures): its
    mean bits per token. That forward is extra cost (TrialResult.candidate_tokens), never trained on.
    Threshold: the running `quantile` (0.5: the running median) of candidate losses, kept in the
    state as an EMA (decay `ema`) of each step's candidate-batch quantile; the first step, which
    has no history, uses its own batch's quantile. A candidate below the threshold counts as
    "already learned". Selected, with static shapes: every candidate at or above the threshold,
    in draw order (a uniform random subset of them when more than `batch` qualify), then, if fewer
    than `batch` qualify, the hardest (highest-loss) of the learned ones. So a learned sequence is
    trained on only when too few unlearned ones were drawn, and then the least-learned first: the
    seed plan's "drop the sequences below the running median", with the batch size held fixed for
    jit (proven for the list model in proofs/igla/Curriculum.v, curriculum_drops_learned_first).
    Ranking by loss alone would ignore the running quantile and pick the hardest half of each
    draw, a per-batch median. Deterministic: a pure function of the state and train_N.

    Returns (x_BxL, y_BxL, the updated CurriculumState, the selected candidate indices idx_B).
    """
    cur = state.curriculum
    spec = cur.spec
    n_cand = spec.factor * batch
    xc, yc = get_batch(train_N, state.hparams["seed"], state.step, batch=n_cand, context=state.cfg.context)
    loss_K = jnp.mean(token_bits(logits_fn(state.cfg, state.params, xc), yc), axis=-1)
    q_batch = jnp.quantile(loss_K, spec.quantile)
    first = cur.seen == 0
    thr = jnp.where(first, q_batch, cur.q)
    above_K = loss_K >= thr
    iota_K = jnp.arange(n_cand, dtype=jnp.int32)
    # sort keys: unlearned first; among them draw order; among the learned, highest loss first
    tie_K = jnp.where(above_K, iota_K.astype(jnp.float32), -loss_K)
    _, _, order_K = jax.lax.sort(((~above_K).astype(jnp.int32), tie_K, iota_K), num_keys=2)
    idx_B = jnp.sort(order_K[:batch])
    new = cur.replace(q=jnp.where(first, q_batch, spec.ema * cur.q + (1.0 - spec.ema) * q_batch),
                      seen=cur.seen + 1, below_cand=cur.below_cand + jnp.sum(~above_K),
                      below_kept=cur.below_kept + jnp.sum(~above_K[idx_B]))
    return xc[idx_B], yc[idx_B], new, idx_B


@functools.partial(jax.jit, donate_argnums=(0,))
def train_step(state: TrainState, batch: tuple[jax.Array, jax.Array]) -> tuple[TrainState, dict]:
    """One optimiser step on an explicit batch (x_BxL, y_BxL); pure, jitted once per model shape."""
    return _step(state, *batch)


def _chunk(state: TrainState, train_N: jax.Array, end: jax.Array, batch: int) -> tuple[TrainState, jax.Array]:
    """Up to CHUNK steps, each on get_batch(seed, step); steps at or past `end` are no-ops.

    Every step of every trial runs through this one compiled body, so a run split at any step
    and resumed from a checkpoint reproduces the uninterrupted run exactly. A state with a
    curriculum (static in its treedef, so its own program) trains on `curriculum_select`'s batch.
    """
    def body(st: TrainState, _):
        def do(s: TrainState):
            if s.curriculum is None:
                x, y = get_batch(train_N, s.hparams["seed"], s.step, batch=batch, context=s.cfg.context)
                s2, m = _step(s, x, y)
            else:
                x, y, cur, _ = curriculum_select(s, train_N, batch)
                s2, m = _step(s, x, y)
                s2 = s2.replace(curriculum=cur)
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


def validation_bpb(state: TrainState, split: str = "val", timing: dict[str, float] | None = None) -> float:
    """BPB of the state's parameters at its current step on `split` (default validation; never a running minimum).

    One compiled evaluation program per shape serves every split (`igla_jax.training.programs`); timing, when
    given, gains the seconds spent compiling it ("compile_s") and evaluating ("eval_s")."""
    t0 = time.perf_counter()
    x0 = jax.ShapeDtypeStruct((EVAL_BATCH, state.cfg.context), jnp.int32)
    prog, comp = compiled("eval_logits", _eval_logits, state.cfg, state.params, x0)
    bpb = evaluate_bpb(lambda x: prog(state.params, x), context=state.cfg.context, split=split,
                       eval_batch=EVAL_BATCH)
    if timing is not None:
        timing["compile_s"] = timing.get("compile_s", 0.0) + comp
        timing["eval_s"] = timing.get("eval_s", 0.0) + time.perf_counter() - t0 - comp
    return bpb


def _summarise(trace: np.ndarray) -> tuple[bool, float]:
    """(finite, mean train bits) over the active steps of chunk traces [..., CHUNK, 3]."""
    active = trace[..., 2] > 0
    finite = bool(np.all(np.isfinite(trace[..., 1][active])))
    bits = float(np.mean(trace[..., 0][active])) if active.any() else float("nan")
    return finite, bits
