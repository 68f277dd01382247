"""Prints one JSON object of throughput figures: sgemm peaks, reference-shape MFU, a same-run PyTorch
reference, population speed-up.

    python -m experiments.bench_throughput [--population 8] [--chunks 6] [--bf16]

The fp32 peak is measured in a subprocess without OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE (which hold
numpy to AVX2 kernels here); the in-process figure stays beside it, labelled as the pinned one. The
PyTorch reference (optional extra: pip install -e '.[bench]') is the same shape trained in this run;
without torch no ratio is printed. Both sides report their fastest timed chunk (JAX, 32 steps) or
round (PyTorch, 5 steps), with the median beside it: on shared cores the minimum is the least
disturbed figure. --bf16 also times the reference shape with bfloat16 matmuls
(ModelConfig.matmul_dtype, float32 accumulation) in the same run; its MFU is still against the fp32 peak.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys

import jax

from igla_jax.training.bench import (device_matmul_peak, mfu, population_vs_sequential, sgemm_peak_unpinned,
                                     single_trial, torch_reference)
from igla_jax.training.models import ModelConfig
from igla_jax.training.sgemm import blas_info, sgemm_peak_gflops
from igla_jax.training.step import TrainConfig

NO_TORCH = "torch is not installed (pip install -e '.[bench]'), so no ratio to PyTorch: a constant from another machine would not compare"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m experiments.bench_throughput", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--population", type=int, nargs="+", default=None,
                    help="population sizes to compare with sequential (default: 8 on CPU, 8 and 64 on GPU)")
    ap.add_argument("--chunks", type=int, default=6, help="timed chunks of 32 steps per measurement")
    ap.add_argument("--torch-steps", type=int, default=30, help="timed PyTorch reference steps (default 30)")
    ap.add_argument("--bf16", action="store_true",
                    help="also time the reference shape with bfloat16 matmuls (float32 accumulation)")
    args = ap.parse_args(argv)
    backend = jax.default_backend()
    sizes = args.population or ([8] if backend == "cpu" else [8, 64])
    pinned = sgemm_peak_gflops()
    real = sgemm_peak_unpinned()
    ref = ModelConfig(family="attn", width=128, depth=4, context=64, head_dim=32)   # 4 heads
    single = single_trial(ref, TrainConfig(batch=12), chunks=args.chunks)
    bf16 = (single_trial(dataclasses.replace(ref, matmul_dtype="bfloat16"), TrainConfig(batch=12), chunks=args.chunks)
            if args.bf16 else None)
    # on an accelerator the peak that matters is the device's own (fp32 and JAX's default precision)
    dev_peak = device_matmul_peak() if backend != "cpu" else None
    peak = dev_peak["gflops_highest"] if dev_peak else real["gflops"]
    torch_ref = torch_reference(width=128, depth=4, heads=4, context=64, batch=12, vocab=ref.vocab,
                                steps=args.torch_steps, device="cpu" if backend == "cpu" else "cuda")
    row = {**{k: round(v, 2) for k, v in single.items()},
           "mfu_vs_fp32_peak": round(mfu(single["params"], single["tokens_per_s"], peak), 3)}
    if dev_peak:
        row["mfu_vs_default_precision_peak"] = round(mfu(single["params"], single["tokens_per_s"],
                                                         dev_peak["gflops_default"]), 4)
    else:
        row["mfu_vs_avx2_pinned_peak"] = round(mfu(single["params"], single["tokens_per_s"], pinned), 3)
    bf16_row = ({**{k: round(v, 2) for k, v in bf16.items()},
                 "mfu_vs_fp32_peak": round(mfu(bf16["params"], bf16["tokens_per_s"], peak), 3)} if bf16 else None)
    if torch_ref is not None:
        row["vs_pytorch_reference"] = round(single["tokens_per_s"] / torch_ref["tokens_per_s"], 3)
        if bf16_row:
            bf16_row["vs_pytorch_reference"] = round(bf16["tokens_per_s"] / torch_ref["tokens_per_s"], 3)
        torch_ref = {**{k: round(v, 2) if isinstance(v, float) else v for k, v in torch_ref.items()},
                     "mfu_vs_fp32_peak": round(mfu(torch_ref["params"], torch_ref["tokens_per_s"], peak), 3)}
    else:
        print(f"note: {NO_TORCH}" + ("" if backend == "cpu" else " (or torch has no CUDA device)"), file=sys.stderr)
    proxy = ModelConfig(family="attn", width=32, depth=2, context=64, head_dim=32)
    out = {
        "backend": backend, "device": str(jax.devices()[0]),
        **({"device_matmul_peak_gflops": {k: round(v, 1) for k, v in dev_peak.items()},
            "device_peak_note": "jitted jnp.dot of 8192^3 fp32 on the device; MFU above is against its "
                                "'highest' (true fp32) rate"} if dev_peak else {}),
        "sgemm_peak_gflops": round(real["gflops"], 1),   # this host's CPU (numpy), also on a GPU machine
        "sgemm_peak_blas": real["blas"],
        "sgemm_peak_openblas_env": real["openblas_env"],
        "sgemm_peak_gflops_pinned": round(pinned, 1),
        "sgemm_peak_pinned_note": "in-process numpy as this environment runs it (OPENBLAS_CORETYPE / "
                                  "OPENBLAS_L2_SIZE kept: AVX2-limited where they are set)",
        "sgemm_peak_pinned_blas": blas_info(),
        "reference_shape": {"family": "attn", "depth": 4, "width": 128, "heads": 4, "context": 64,
                            "batch": 12, "vocab": ref.vocab},
        "single_trial": row,
        **({"single_trial_bf16_matmuls": bf16_row} if bf16_row else {}),
        "pytorch_reference": torch_ref if torch_ref is not None else {"measured": False, "why": NO_TORCH},
        "proxy_shape": {"family": "attn", "depth": 2, "width": 32, "context": 64, "batch": 12},
        "population": [{k: round(v, 3) for k, v in population_vs_sequential(proxy, n, 12, args.chunks).items()}
                       for n in sizes],
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
