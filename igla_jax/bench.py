"""Throughput measurements: sgemm peak, single-trial tokens/s and MFU, population vs sequential."""
from __future__ import annotations

import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from igla_jax.data import splits
from igla_jax.models import ModelConfig, count_params
from igla_jax.train import CHUNK, TrainConfig, init_state, population_chunk, stack_states, train_chunk


def sgemm_peak_gflops(sizes: tuple[int, ...] = (1024, 2048), reps: int = 5) -> float:
    """Best numpy fp32 matmul rate over the sizes, GFLOP/s (the machine's practical peak)."""
    best = 0.0
    rng = np.random.default_rng(0)
    for n in sizes:
        a = rng.standard_normal((n, n), dtype=np.float32)
        a @ a
        t = time.perf_counter()
        for _ in range(reps):
            a @ a
        best = max(best, 2 * n ** 3 * reps / (time.perf_counter() - t) / 1e9)
    return best


def _time_chunks(fn, state, chunks: int) -> tuple[Any, float]:
    state, tr = fn(state)                      # compile + warm up
    jax.block_until_ready(tr)
    t = time.perf_counter()
    for _ in range(chunks):
        state, tr = fn(state)
    jax.block_until_ready(tr)
    return state, (time.perf_counter() - t) / (chunks * CHUNK)


def single_trial(cfg: ModelConfig, tc: TrainConfig, chunks: int = 4) -> dict[str, float]:
    """ms/step and tokens/s of one trial's steady-state training loop."""
    train_N = jnp.asarray(splits()[0])
    end = jnp.asarray(np.iinfo(np.int32).max, jnp.int32)
    state = init_state(cfg, tc)
    n = count_params(state.params)
    _, s_per_step = _time_chunks(lambda s: train_chunk(s, train_N, end, batch=tc.batch), state, chunks)
    tps = tc.batch * cfg.context / s_per_step
    return {"params": n, "ms_per_step": s_per_step * 1e3, "tokens_per_s": tps}


def population_vs_sequential(cfg: ModelConfig, n_trials: int, batch: int, chunks: int = 3) -> dict[str, float]:
    """Aggregate tokens/s of n trials one after another vs the same n as one vmapped population."""
    train_N = jnp.asarray(splits()[0])
    end = jnp.asarray(np.iinfo(np.int32).max, jnp.int32)
    tcs = [TrainConfig(lr=1e-3 * 2 ** (i % 4), seed=42 + i, batch=batch, total_steps=10_000)
           for i in range(n_trials)]
    seq_s = 0.0
    for tc in tcs:
        _, s = _time_chunks(lambda st: train_chunk(st, train_N, end, batch=batch), init_state(cfg, tc), chunks)
        seq_s += s
    pop = stack_states([init_state(cfg, tc) for tc in tcs])
    _, pop_s = _time_chunks(lambda st: population_chunk(st, train_N, end, batch), pop, chunks)
    tokens = n_trials * batch * cfg.context
    return {"trials": n_trials, "sequential_tokens_per_s": tokens / seq_s,
            "population_tokens_per_s": tokens / pop_s, "speedup": seq_s / pop_s}
