"""TinyShakespeare bytes: hash-checked loading, the train / validation / test split, pure batches, honest BPB.

Split (pre-registration v2): train is the first 90 % (nanoGPT's convention, unchanged). The
held-out 10 % is cut at a window boundary into a **validation** half (its first VAL_BYTES =
55,552 bytes = 217 windows of 256, a whole number of windows for every context that divides
256) and a **test** half (the remaining 55,988 bytes). Everything that selects (ASHA, filters,
samplers, pruners, the leaderboard, the studies) reads validation; only victory rows and headline
quality figures read test. For such a context the byte-weighted mean of the two halves' BPB
equals the BPB over the whole held-out 10 % (the figure reported before the split).
"""
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
# Validation half of the held-out bytes: the largest multiple of 256 not above half of them.
VAL_BYTES = 55_552
SPLITS = ("val", "test", "heldout")   # what evaluate_bpb can score; heldout = val + test
# Stream ids folded into a run's key so batch sampling and dropout never share randomness.
BATCH_STREAM = 0
DROPOUT_STREAM = 1


class DataError(RuntimeError):
    """The shipped data set is missing or does not match its recorded hash."""


def data_path() -> Path:
    """Path of the shipped copy of TinyShakespeare."""
    return Path(str(resources.files("igla_jax.training") / "corpus" / "tinyshakespeare.txt"))


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
    """First held-out byte: train is [0, split), held-out (validation + test) is [split, n)."""
    return int(n * TRAIN_FRACTION)


def split_bounds(n: int) -> tuple[int, int]:
    """(first validation byte, first test byte): train [0, a), validation [a, b), test [b, n)."""
    a = split_index(n)
    return a, a + VAL_BYTES


def corpus() -> np.ndarray:
    """Every byte of the hash-checked corpus as uint8 tokens (the one place the splits read from)."""
    return np.frombuffer(load_bytes(), dtype=np.uint8)


@functools.lru_cache(maxsize=1)
def splits() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train_N, val_M, test_T) uint8 token arrays; byte-level, vocabulary 256, contiguous and disjoint."""
    tokens = corpus()
    a, b = split_bounds(tokens.size)
    return tokens[:a], tokens[a:b], tokens[b:]


def clear_caches() -> None:
    """Forget cached splits and evaluation windows (tests that swap `corpus` call this)."""
    splits.cache_clear()
    eval_windows.cache_clear()


def batch_key(seed: int | jax.Array, step: int | jax.Array) -> jax.Array:
    """The PRNG key of the batch at (seed, step): a pure function, no hidden state."""
    return jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(seed), BATCH_STREAM), step)


def get_batch(train_N: jax.Array, seed: int | jax.Array, step: int | jax.Array, *, batch: int,
              context: int) -> tuple[jax.Array, jax.Array]:
    """Training batch (x_BxL, y_BxL) as a pure function of (seed, step); jit-safe.

    Window starts are uniform over every start whose window (context + 1 bytes) fits, so the
    last training byte is a target too; y is x shifted by one byte.
    """
    key = batch_key(seed, step)
    starts_B = jax.random.randint(key, (batch,), 0, train_N.shape[0] - context)
    idx_BxL1 = starts_B[:, None] + jnp.arange(context + 1)[None, :]
    w_BxL1 = jnp.take(train_N, idx_BxL1).astype(jnp.int32)
    return w_BxL1[:, :-1], w_BxL1[:, 1:]


@functools.lru_cache(maxsize=16)
def eval_windows(context: int, split: str = "val") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x_WxL, y_WxL, mask_WxL) covering every byte of `split` exactly once as a target.

    Protocol: targets are the split's bytes in order, cut into non-overlapping windows of
    `context` bytes starting at the split's first byte; each window's inputs are the byte before
    each target (for the split's first byte that is the byte just before the split, used as
    context only and never scored). Each window starts with an empty model state, so the first
    target of a window is predicted from one byte of context and the last from `context` bytes.
    The final partial window is padded and masked. Nothing held out is ever a training target.
    """
    if split not in SPLITS:
        raise ValueError(f"split={split!r}: choose one of {', '.join(SPLITS)}")
    tokens = corpus().astype(np.int32)
    a, b = split_bounds(tokens.size)
    lo, hi = {"val": (a, b), "test": (b, tokens.size), "heldout": (a, tokens.size)}[split]
    y = tokens[lo:hi]
    x = tokens[lo - 1:hi - 1]
    n = y.size
    w = math.ceil(n / context)
    pad = w * context - n
    mask = np.concatenate([np.ones(n, np.float32), np.zeros(pad, np.float32)])
    x = np.concatenate([x, np.zeros(pad, np.int32)])
    y = np.concatenate([y, np.zeros(pad, np.int32)])
    return x.reshape(w, context), y.reshape(w, context), mask.reshape(w, context)


def validation_windows(context: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The validation half's windows (see `eval_windows`)."""
    return eval_windows(context, "val")


def token_bits(logits_BxLxV: jax.Array, y_BxL: jax.Array) -> jax.Array:
    """Per-token cross-entropy in bits (float32)."""
    logits = logits_BxLxV.astype(jnp.float32)
    lse_BxL = jax.nn.logsumexp(logits, axis=-1)
    # A one-hot product rather than a gather: its gradient avoids a scatter, slow on XLA:CPU.
    tgt_BxL = jnp.sum(logits * jax.nn.one_hot(y_BxL, logits.shape[-1], dtype=logits.dtype), axis=-1)
    return (lse_BxL - tgt_BxL) / jnp.float32(math.log(2.0))


EVAL_BATCH = 256   # windows per evaluation call: one compiled shape (the last chunk is padded)


def evaluate_bpb(logits_fn: Callable[[jax.Array], jax.Array], *, context: int,
                 eval_batch: int = EVAL_BATCH, split: str = "val") -> float:
    """Bits per byte over every byte of `split` (default: validation): mean cross-entropy, in bits.

    logits_fn maps x_BxL int32 tokens to logits_BxLxV (deterministic, no dropout). See
    `eval_windows` for the windowing protocol. Sums are accumulated in float64 on the host.
    split="test" is for victory rows and headline figures only; nothing that selects reads it.
    """
    x, y, m = eval_windows(context, split)
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
