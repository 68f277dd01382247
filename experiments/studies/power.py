"""A falsifier's power on one table, shared by `experiments.studies.v3_power` and `experiments.studies.v6_power`.

Each of those replays N race seeds of a baseline, the accelerator and a *placebo* (a useless twin of
the accelerator), then calls `resampled_enable_rates`: --studies study-sized subsets of paired seeds
(drawn with replacement) are judged by the accelerator's own verdict function, and the share of
studies that enable each arm is counted. The placebo's disabled share should be about 1 - alpha / 7;
the accelerator's enabled share is the falsifier's power on this table.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np


def resampled_enable_rates(reg: Mapping[str, np.ndarray], baseline: str, arms: Sequence[str],
                           verdict: Callable[[np.ndarray, np.ndarray, Any], Any], repeats: int, studies: int,
                           prereg: Any, seed: int = 0) -> dict[str, float]:
    """Per arm, the share of `studies` resampled sets of `repeats` paired seeds whose verdict enables it.

    reg: per-seed regrets of each arm and the baseline (paired by index); verdict(arm, baseline,
    prereg) -> an object with `.enabled`. One index draw per study serves every arm (paired).
    """
    rng = np.random.default_rng(seed)
    n = len(reg[baseline])
    on = dict.fromkeys(arms, 0)
    for _ in range(studies):
        idx = rng.integers(0, n, repeats)
        for k in on:
            on[k] += bool(verdict(reg[k][idx], reg[baseline][idx], prereg).enabled)
    return {k: v / studies for k, v in on.items()}


def progress_printer(arms: int) -> Callable[[int, int], None]:
    """A progress callback printing every tenth of the seeds to stderr."""
    t0 = time.monotonic()

    def progress(i: int, n: int) -> None:
        if i == n or i % max(1, n // 10) == 0:
            print(f"  replayed {i}/{n} seeds x {arms} arms ({time.monotonic() - t0:.0f} s)", file=sys.stderr, flush=True)
    return progress


def finish(prog: str, argv: Sequence[str] | None, table: Any, res: dict[str, Any], out: Path | None,
           t0: float, lines: Sequence[str], **extra: Any) -> int:
    """Prints `lines`, writes the result document (table, its sha256, the command, wall seconds) to `out`."""
    doc = {"table": table.name, "table_sha256": table.sha256, **extra, **res,
           "command": f"python -m experiments.{prog} " + " ".join(sys.argv[1:] if argv is None else argv),
           "wall_s": round(time.monotonic() - t0, 1)}
    for line in lines:
        print(line)
    if out is not None:
        out.write_text(json.dumps(doc, indent=1) + "\n")
        print(f"wrote {out}")
    return 0
