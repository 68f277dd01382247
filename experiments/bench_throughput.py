"""Prints one JSON object of throughput figures: sgemm peak, reference-shape MFU, population speed-up.

    python -m experiments.bench_throughput [--population 8] [--quick]
"""
from __future__ import annotations

import argparse
import json
import sys

import jax

from igla_jax.bench import population_vs_sequential, sgemm_peak_gflops, single_trial
from igla_jax.models import ModelConfig
from igla_jax.train import TrainConfig

PYTORCH_REFERENCE_TOKENS_PER_S = 18_000   # REFERENCE.md section 8, same shape, this machine class


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m experiments.bench_throughput", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--population", type=int, nargs="+", default=None,
                    help="population sizes to compare with sequential (default: 8 on CPU, 8 and 64 on GPU)")
    ap.add_argument("--chunks", type=int, default=4, help="timed chunks of 32 steps per measurement")
    args = ap.parse_args(argv)
    backend = jax.default_backend()
    sizes = args.population or ([8] if backend == "cpu" else [8, 64])
    peak = sgemm_peak_gflops()
    ref = ModelConfig(family="attn", width=128, depth=4, context=64, head_dim=32)   # 4 heads
    single = single_trial(ref, TrainConfig(batch=12), chunks=args.chunks)
    flops = 6 * single["params"] * single["tokens_per_s"]
    proxy = ModelConfig(family="attn", width=32, depth=2, context=64, head_dim=32)
    out = {
        "backend": backend, "device": str(jax.devices()[0]),
        "sgemm_peak_gflops": round(peak, 1),
        "reference_shape": {"family": "attn", "depth": 4, "width": 128, "heads": 4, "context": 64,
                            "batch": 12, "vocab": 256},
        "single_trial": {**{k: round(v, 2) for k, v in single.items()},
                         "mfu_vs_numpy_sgemm": round(flops / (peak * 1e9), 3),
                         "vs_pytorch_reference": round(single["tokens_per_s"] / PYTORCH_REFERENCE_TOKENS_PER_S, 3)},
        "proxy_shape": {"family": "attn", "depth": 2, "width": 32, "context": 64, "batch": 12},
        "population": [{k: round(v, 3) for k, v in population_vs_sequential(proxy, n, 12, args.chunks).items()}
                       for n in sizes],
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
