"""A curve table's truth from seeds nothing selected on (issue 21).

Every method selects on the table's primary seed, so a config's primary-seed BPB is not its truth:
the best of 384 configs on one seed is partly its seed's luck. The truth file
(`<table>_truth.jsonl`, the table's row format, recorded by `python -m experiments.record_truth`)
holds the table's best configs on its two extra seeds; a config's true BPB is the mean of its
extra-seed top-rung BPBs (from the truth file, or from the table where it already ran them). A
diverged extra-seed run counts as `UNIFORM_BPB` (it knows nothing). Configs without both extra seeds
have no truth value here; a harness that needs one for them falls back to the primary seed and says so.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from igla_jax.evidence.prereg import UNIFORM_BPB
from igla_jax.search.search_space import Config, config_from_dict


class TruthError(ValueError):
    """A table or truth file cannot give what was asked (named in the message)."""


def truth_path(table_path: str | os.PathLike) -> Path:
    """curves_tenth.jsonl -> curves_tenth_truth.jsonl (beside the table)."""
    p = Path(table_path)
    return p.with_name(p.name.removesuffix(".jsonl") + "_truth.jsonl")


def _top(r: Mapping[str, Any]) -> float | None:
    return r["val_bpb"][-1] if r["status"] == "ok" else None


def selection(rows: Sequence[Mapping[str, Any]], *, within: float, top: int) -> list[tuple[Config, str]]:
    """The configs whose truth is recorded: within `within` of the best primary-seed top-rung BPB, plus the
    `top` best of each stratum; in ascending primary-seed BPB order (ties by config id)."""
    prim = [r for r in rows if r["seed_role"] == "primary" and _top(r) is not None]
    if not prim:
        raise TruthError("the table has no primary-seed run that reached its top rung")
    if not within >= 0 or top < 0:
        raise TruthError(f"within={within!r} must be >= 0 and top={top!r} >= 0")
    order = sorted(prim, key=lambda r: (_top(r), r["config_id"]))
    best = _top(order[0])
    keep = {r["config_id"] for r in order if _top(r) <= best + within}
    for stratum in sorted({r["stratum"] for r in order}):
        keep |= {r["config_id"] for r in [x for x in order if x["stratum"] == stratum][:top]}
    return [(config_from_dict(r["config"]), r["stratum"]) for r in order if r["config_id"] in keep]


def true_bpb(rows: Iterable[Mapping[str, Any]], *, extra_seeds: Sequence[int]) -> dict[str, float]:
    """config_id -> mean top-rung validation BPB over `extra_seeds`, for configs recorded on every one of them."""
    got: dict[str, dict[int, float]] = {}
    want = {int(s) for s in extra_seeds}
    for r in rows:
        if int(r["seed"]) in want:
            b = _top(r)
            got.setdefault(r["config_id"], {})[int(r["seed"])] = UNIFORM_BPB if b is None else float(b)
    return {c: math.fsum(v.values()) / len(v) for c, v in got.items() if set(v) == want}
