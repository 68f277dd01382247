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

FORMAT = 1


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
    blob = {"format": FORMAT, "model_cfg": json.dumps(dataclasses.asdict(model_cfg), sort_keys=True),
            "train_cfg": json.dumps(dataclasses.asdict(train_cfg), sort_keys=True), "state": host}
    _atomic_write(Path(path), flax.serialization.msgpack_serialize(blob))


def restore(path: str | Path, template: Any, model_cfg: Any, train_cfg: Any) -> Any:
    """Restores a state shaped like template; the configs must match those it was saved with."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: checkpoint file does not exist")
    try:
        blob = flax.serialization.msgpack_restore(p.read_bytes())
    except Exception as e:  # msgpack raises several unrelated types on damage
        raise CheckpointError(f"{p}: damaged checkpoint ({type(e).__name__}: {e})") from None
    if blob.get("format") != FORMAT:
        raise CheckpointError(f"{p}: unknown checkpoint format {blob.get('format')!r}")
    for key, cfg in (("model_cfg", model_cfg), ("train_cfg", train_cfg)):
        want = json.dumps(dataclasses.asdict(cfg), sort_keys=True)
        if blob[key] != want:
            raise CheckpointError(f"{p}: saved {key} {blob[key]} differs from the requested {want}")
    return flax.serialization.from_state_dict(template, blob["state"])
