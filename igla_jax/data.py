"""TinyShakespeare bytes: hash-checked loading, the 90/10 split, pure batches, honest BPB."""
from __future__ import annotations

import functools
import hashlib
import math
from importlib import resources
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

VOCAB = 256
DATA_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
DATA_BYTES = 1_115_394
TRAIN_FRACTION = 0.9
# Stream ids folded into a run's key so batch sampling and dropout never share randomness.
BATCH_STREAM = 0
DROPOUT_STREAM = 1


class DataError(RuntimeError):
    """The shipped data set is missing or does not match its recorded hash."""


def data_path() -> Path:
    """Path of the shipped copy of TinyShakespeare."""
    return Path(str(resources.files("igla_jax") / "data" / "tinyshakespeare.txt"))


def check_bytes(raw: bytes, source: str) -> bytes:
    """Returns raw if its sha256 is the recorded one; raises DataError naming source otherwise."""
    digest = hashlib.sha256(raw).hexdigest()
    if digest != DATA_SHA256:
        raise DataError(
            f"{source}: sha256 {digest} does not match the recorded {DATA_SHA256} "
            f"({len(raw):,} bytes, expected {DATA_BYTES:,}); the data file was altered or truncated. "
            "Reinstall the package (pip install -e .) to restore it."
        )
    return raw


@functools.lru_cache(maxsize=1)
def load_bytes(path: str | None = None) -> bytes:
    """Reads and hash-checks the corpus (the shipped copy unless path is given)."""
    p = Path(path) if path is not None else data_path()
    if not p.is_file():
        raise DataError(f"{p}: TinyShakespeare data file is missing; reinstall the package (pip install -e .).")
    return check_bytes(p.read_bytes(), str(p))


def split_index(n: int) -> int:
    """First validation byte: train is [0, split), validation is [split, n)."""
    return int(n * TRAIN_FRACTION)


@functools.lru_cache(maxsize=1)
def splits() -> tuple[np.ndarray, np.ndarray]:
    """(train_N, val_M) uint8 token arrays; byte-level, vocabulary 256, disjoint by construction."""
    tokens = np.frombuffer(load_bytes(), dtype=np.uint8)
    s = split_index(tokens.size)
    return tokens[:s], tokens[s:]


def batch_key(seed: int | jax.Array, step: int | jax.Array) -> jax.Array:
    """The PRNG key of the batch at (seed, step): a pure function, no hidden state."""
    return jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(seed), BATCH_STREAM), step)


def get_batch(train_N: jax.Array, seed: int | jax.Array, step: int | jax.Array, *, batch: int,
              context: int) -> tuple[jax.Array, jax.Array]:
    """Training batch (x_BxL, y_BxL) as a pure function of (seed, step); jit-safe.

    Window starts are uniform over the training bytes; y is x shifted by one byte.
    """
    key = batch_key(seed, step)
    starts_B = jax.random.randint(key, (batch,), 0, train_N.shape[0] - context - 1)
    idx_BxL1 = starts_B[:, None] + jnp.arange(context + 1)[None, :]
    w_BxL1 = jnp.take(train_N, idx_BxL1).astype(jnp.int32)
    return w_BxL1[:, :-1], w_BxL1[:, 1:]


@functools.lru_cache(maxsize=8)
def validation_windows(context: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x_WxL, y_WxL, mask_WxL) covering every validation byte exactly once as a target.

    Protocol: targets are the validation bytes in order, cut into non-overlapping windows of
    `context` bytes; each window's inputs are the byte before each target (for the first
    validation byte that is the last training byte, used as context only and never scored).
    Each window starts with an empty model state, so the first target of a window is predicted
    from one byte of context and the last from `context` bytes. The final partial window is
    padded and masked. Nothing from validation is ever used as a training target.
    """
    tokens = np.frombuffer(load_bytes(), dtype=np.uint8).astype(np.int32)
    s = split_index(tokens.size)
    y = tokens[s:]
    x = tokens[s - 1:-1]
    n = y.size
    w = math.ceil(n / context)
    pad = w * context - n
    mask = np.concatenate([np.ones(n, np.float32), np.zeros(pad, np.float32)])
    x = np.concatenate([x, np.zeros(pad, np.int32)])
    y = np.concatenate([y, np.zeros(pad, np.int32)])
    return x.reshape(w, context), y.reshape(w, context), mask.reshape(w, context)


def token_bits(logits_BxLxV: jax.Array, y_BxL: jax.Array) -> jax.Array:
    """Per-token cross-entropy in bits (float32)."""
    logits = logits_BxLxV.astype(jnp.float32)
    lse_BxL = jax.nn.logsumexp(logits, axis=-1)
    # A one-hot product rather than a gather: its gradient avoids a scatter, slow on XLA:CPU.
    tgt_BxL = jnp.sum(logits * jax.nn.one_hot(y_BxL, logits.shape[-1], dtype=logits.dtype), axis=-1)
    return (lse_BxL - tgt_BxL) / jnp.float32(math.log(2.0))


def evaluate_bpb(logits_fn: Callable[[jax.Array], jax.Array], *, context: int,
                 eval_batch: int = 256) -> float:
    """Validation bits per byte: mean cross-entropy over every validation byte, in bits.

    logits_fn maps x_BxL int32 tokens to logits_BxLxV (deterministic, no dropout). See
    `validation_windows` for the windowing protocol. Sums are accumulated in float64 on the host.
    """
    x, y, m = validation_windows(context)
    total, count = 0.0, 0.0
    for i in range(0, x.shape[0], eval_batch):
        xb, yb, mb = x[i:i + eval_batch], y[i:i + eval_batch], m[i:i + eval_batch]
        pad = eval_batch - xb.shape[0]
        if pad:  # keep one compiled shape: pad the last chunk with masked rows
            xb = np.concatenate([xb, np.zeros((pad, context), np.int32)])
            yb = np.concatenate([yb, np.zeros((pad, context), np.int32)])
            mb = np.concatenate([mb, np.zeros((pad, context), np.float32)])
        bits = np.asarray(_masked_bits_sum(logits_fn, jnp.asarray(xb), jnp.asarray(yb), jnp.asarray(mb)))
        total += float(bits[0])
        count += float(mb.sum())
    return total / count


def _masked_bits_sum(logits_fn, x, y, m):
    bits = token_bits(logits_fn(x), y)
    s = jnp.sum(jnp.where(m > 0, bits, 0.0), dtype=jnp.float32)
    return jnp.stack([s])
