"""Checkpoints: one msgpack file per state plus its configs, written atomically (tmp, fsync, rename)."""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import flax.serialization
import jax
import numpy as np

# 2: the state's hparams carry the model's traced dropout and ema_beta (format 1 lacks them).
# 3: the state has a `curriculum` entry (V7's selection state, or None). Format 2 is still read:
#    it is a state without a curriculum, and its train_cfg has no "curriculum" key.
FORMAT = 3
READABLE = (2, 3)


class CheckpointError(RuntimeError):
    """A checkpoint is missing, damaged, or belongs to another configuration."""


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save(path: str | Path, state: Any, model_cfg: Any, train_cfg: Any) -> None:
    """Writes state (with both configs as metadata) to path atomically."""
    host = jax.tree_util.tree_map(np.asarray, flax.serialization.to_state_dict(state))
    blob = {"format": FORMAT, "model_cfg": _cfg_json(model_cfg), "train_cfg": _cfg_json(train_cfg), "state": host}
    _atomic_write(Path(path), flax.serialization.msgpack_serialize(blob))


def _cfg_json(cfg: Any) -> str:
    """A config as the checkpoint records it; an unset curriculum and the default float32 matmuls are
    left out, as the formats before them wrote it."""
    d = dataclasses.asdict(cfg)
    if "curriculum" in d and d["curriculum"] is None:
        del d["curriculum"]
    if d.get("matmul_dtype") == "float32":
        del d["matmul_dtype"]
    return json.dumps(d, sort_keys=True)


def restore(path: str | Path, template: Any, model_cfg: Any, train_cfg: Any) -> Any:
    """Restores a state shaped like template; the configs must match those it was saved with."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: checkpoint file does not exist")
    try:
        blob = flax.serialization.msgpack_restore(p.read_bytes())
    except Exception as e:  # msgpack raises several unrelated types on damage
        raise CheckpointError(f"{p}: damaged checkpoint ({type(e).__name__}: {e})") from None
    if blob.get("format") not in READABLE:
        raise CheckpointError(f"{p}: checkpoint format {blob.get('format')!r}; this code reads formats "
                              f"{', '.join(map(str, READABLE))} only (retrain, or use a fresh output directory)")
    for key, cfg in (("model_cfg", model_cfg), ("train_cfg", train_cfg)):
        want = _cfg_json(cfg)
        if blob[key] != want:
            raise CheckpointError(f"{p}: saved {key} {blob[key]} differs from the requested {want}")
    if blob["format"] == 2 and isinstance(blob.get("state"), dict):
        blob["state"].setdefault("curriculum", None)   # format 2 predates V7: no curriculum
    try:
        state = flax.serialization.from_state_dict(template, blob["state"])
    except (KeyError, ValueError, TypeError) as e:
        raise CheckpointError(f"{p}: saved state does not fit the requested one ({type(e).__name__}: {e})") from None
    _check_hparams(p, template, state)
    return state


def _check_hparams(p: Path, template: Any, state: Any) -> None:
    """The traced hyperparameters (lr, dropout, ema_beta, ...) restored must be those the template was built with.

    They are data, not part of the compiled program, so a mismatch would otherwise train silently
    with the checkpoint's values under the requested configs' name.
    """
    want, got = getattr(template, "hparams", None), getattr(state, "hparams", None)
    if want is None:
        return
    for k in sorted(want):
        if not np.array_equal(np.asarray(want[k]), np.asarray(got[k])):
            raise CheckpointError(f"{p}: saved hparams[{k!r}]={np.asarray(got[k]).tolist()} differs from the "
                                  f"requested {np.asarray(want[k]).tolist()}")
