"""Throughput measurements: sgemm peaks, single-trial tokens/s and MFU, a same-run PyTorch reference,
population vs sequential."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from igla_jax.training.data import splits
from igla_jax.training.models import ModelConfig, count_params
from igla_jax.training.sgemm import blas_info, sgemm_peak_gflops  # noqa: F401  (re-exported)
from igla_jax.training.step import CHUNK, TrainConfig, init_state, population_chunk, train_chunk
from igla_jax.training.train import stack_states


# Set in this environment against old OpenBLAS bugs; they hold numpy to AVX2 (Haswell) kernels, about
# half the fp32 peak of an AVX-512 core (REFERENCE.md section 8). Removed only in the peak's subprocess.
OPENBLAS_PINS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def sgemm_peak_unpinned(sizes: tuple[int, ...] = (1024, 2048), reps: int = 5, timeout_s: float = 300.0) -> dict[str, Any]:
    """numpy's fp32 matmul peak measured in a subprocess whose environment lacks OPENBLAS_PINS.

    Returns {"gflops", "blas": the child's BLAS per threadpoolctl (internal_api, architecture,
    version, num_threads) or why not, "openblas_env": the OPENBLAS_* variables the child ran with}.
    This process's environment is never changed.
    """
    env = {k: v for k, v in os.environ.items() if k not in OPENBLAS_PINS}
    child = str(Path(__file__).with_name("sgemm.py"))  # by path: the child imports numpy only
    proc = subprocess.run([sys.executable, child, json.dumps([list(sizes), reps])], env=env,
                          capture_output=True, text=True, timeout=timeout_s)
    if proc.returncode != 0:
        raise RuntimeError(f"sgemm peak subprocess failed (rc {proc.returncode}): {proc.stderr.strip()[-500:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def device_matmul_peak(n: int = 8192, reps: int = 10) -> dict[str, float]:
    """An accelerator's fp32 matmul rate through jitted jnp.dot, GFLOP/s: at "highest" precision (true
    fp32) and at JAX's default precision (what the trainer uses; TF32 tensor cores on NVIDIA GPUs)."""
    out: dict[str, float] = {}
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
    for name, prec in (("highest", jax.lax.Precision.HIGHEST), ("default", None)):
        f = jax.jit(lambda x, p=prec: jnp.dot(x, x, precision=p))
        f(a).block_until_ready()
        t = time.perf_counter()
        for _ in range(reps):
            r = f(a)
        r.block_until_ready()
        out[f"gflops_{name}"] = 2 * n ** 3 * reps / (time.perf_counter() - t) / 1e9
    return out


def mfu(params: int, tokens_per_s: float, peak_gflops: float) -> float:
    """Model FLOPs utilisation: 6 x params x tokens/s over the peak (attention FLOPs not counted)."""
    return 6.0 * params * tokens_per_s / (peak_gflops * 1e9)


def _time_chunks(fn, state, chunks: int, first: list[float] | None = None,
                 each: list[float] | None = None) -> tuple[Any, float]:
    """(state, seconds per step over `chunks` timed chunks); the first call (compile + warm-up) is timed
    apart and appended to `first` when given; `each`, when given, receives every chunk's seconds per step."""
    t = time.perf_counter()
    state, tr = fn(state)                      # compile + warm up
    jax.block_until_ready(tr)
    if first is not None:
        first.append(time.perf_counter() - t)
    t0 = t = time.perf_counter()
    for _ in range(chunks):
        state, tr = fn(state)
        if each is not None:
            jax.block_until_ready(tr)
            each.append((time.perf_counter() - t) / CHUNK)
            t = time.perf_counter()
    jax.block_until_ready(tr)
    return state, (time.perf_counter() - t0) / (chunks * CHUNK)


def single_trial(cfg: ModelConfig, tc: TrainConfig, chunks: int = 4) -> dict[str, float]:
    """ms/step and tokens/s of one trial's steady-state training loop.

    ms_per_step is the fastest of `chunks` separately timed chunks of CHUNK steps (the cores here are
    shared: the minimum is the least disturbed figure), ms_per_step_median the median chunk.
    """
    train_N = jnp.asarray(splits()[0])
    end = jnp.asarray(np.iinfo(np.int32).max, jnp.int32)
    state = init_state(cfg, tc)
    n = count_params(state.params)
    first: list[float] = []
    each: list[float] = []
    _time_chunks(lambda s: train_chunk(s, train_N, end, batch=tc.batch), state, chunks, first, each)
    s_per_step = min(each)
    tps = tc.batch * cfg.context / s_per_step
    return {"params": n, "ms_per_step": s_per_step * 1e3, "ms_per_step_median": float(np.median(each)) * 1e3,
            "tokens_per_s": tps, "first_chunk_s": first[0]}


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
    first: list[float] = []
    _, pop_s = _time_chunks(lambda st: population_chunk(st, train_N, end, batch), pop, chunks, first)
    tokens = n_trials * batch * cfg.context
    return {"trials": n_trials, "sequential_tokens_per_s": tokens / seq_s,
            "population_tokens_per_s": tokens / pop_s, "speedup": seq_s / pop_s,
            "population_first_chunk_s": first[0]}


def torch_reference(*, width: int = 128, depth: int = 4, heads: int = 4, context: int = 64, batch: int = 12,
                    vocab: int = 256, steps: int = 20, warmup: int = 3, rounds: int = 6,
                    device: str = "cpu") -> dict[str, float] | None:
    """ms/step and tokens/s of a PyTorch eager GPT of our reference shape, trained in this process.

    `steps` timed steps in `rounds` separately timed rounds; ms_per_step is the fastest round's
    (ms_per_step_median beside it), as in single_trial.

    device "cuda": on the GPU (torch.cuda.synchronize around the timed steps); None when torch or
    that device is missing.

    The same architecture as `attn` (pre-norm LayerNorm without affine, bias-free linears, learned
    positions, GELU MLP x4, untied readout, AdamW), on random tokens: only speed is measured.
    None when torch is not installed (the optional `bench` extra); torch is imported here only.
    """
    try:
        import torch
        from torch import nn
    except ImportError:
        return None
    if device != "cpu" and not torch.cuda.is_available():
        return None
    sync = torch.cuda.synchronize if device != "cpu" else (lambda: None)
    torch.manual_seed(0)

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.qkv = nn.Linear(width, 3 * width, bias=False)
            self.o = nn.Linear(width, width, bias=False)
            self.up = nn.Linear(width, 4 * width, bias=False)
            self.down = nn.Linear(4 * width, width, bias=False)

        def forward(self, x):
            B, L, D = x.shape
            q, k, v = self.qkv(nn.functional.layer_norm(x, (D,))).split(D, dim=-1)
            q, k, v = (t.view(B, L, heads, D // heads).transpose(1, 2) for t in (q, k, v))
            a = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.o(a.transpose(1, 2).reshape(B, L, D))
            return x + self.down(nn.functional.gelu(self.up(nn.functional.layer_norm(x, (D,)))))

    class GPT(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.tok = nn.Embedding(vocab, width)
            self.pos = nn.Parameter(torch.zeros(context, width))
            self.blocks = nn.ModuleList(Block() for _ in range(depth))
            self.head = nn.Linear(width, vocab, bias=False)

        def forward(self, x):
            h = self.tok(x) + self.pos
            for b in self.blocks:
                h = b(h)
            return self.head(nn.functional.layer_norm(h, (width,)))

    model = GPT().to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randint(0, vocab, (batch, context), device=device)
    y = torch.randint(0, vocab, (batch, context), device=device)

    def step() -> None:
        loss = nn.functional.cross_entropy(model(x).view(-1, vocab), y.view(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    for _ in range(warmup):
        step()
    sync()
    per_round = max(1, steps // rounds)
    each = []
    for _ in range(max(1, steps // per_round)):
        t = time.perf_counter()
        for _ in range(per_round):
            step()
        sync()
        each.append((time.perf_counter() - t) / per_round)
    s = min(each)   # the fastest round, as single_trial's fastest chunk
    return {"params": sum(p.numel() for p in model.parameters()), "ms_per_step": s * 1e3,
            "ms_per_step_median": float(np.median(each)) * 1e3,
            "tokens_per_s": batch * context / s, "threads": torch.get_num_threads(), "version": torch.__version__,
            "device": device}
