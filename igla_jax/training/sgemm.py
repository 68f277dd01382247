"""numpy's fp32 matmul peak and the BLAS behind it (numpy only: also run as a script, in a child process).

`python igla_jax/training/sgemm.py '[[1024, 2048], 5]'` prints one JSON line {"gflops", "blas", "openblas_env"};
`igla_jax.training.bench.sgemm_peak_unpinned` runs it with the OPENBLAS pins removed from the child's
environment. Run by path, not as a module, so the child never imports jax.
"""
from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import numpy as np


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


def blas_info() -> list[dict[str, Any]] | str:
    """This process's BLAS per threadpoolctl (internal_api, architecture, version), or why not."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "threadpoolctl is not installed (it usually comes with scikit-learn; pip install threadpoolctl)"
    return [{k: d.get(k) for k in ("internal_api", "architecture", "version", "num_threads")}
            for d in threadpool_info() if d.get("user_api") == "blas"]


if __name__ == "__main__":
    sizes, reps = json.loads(sys.argv[1])
    print(json.dumps({"gflops": sgemm_peak_gflops(tuple(sizes), reps), "blas": blas_info(),
                      "openblas_env": {k: v for k, v in os.environ.items() if k.startswith("OPENBLAS_")}}))
