"""Zero-cost proxy scores of one config and their cost against a first rung:
python -m experiments.proxy_score --arch attn --width 64 --depth 4 [--context N] [--batch N] [--seed N] [--steps 64]

Prints JSON: synflow, grad_norm, non-embedding params (accelerators/zero_cost.py), the scoring wall
time cold (first call: compile + run) and warm (same program, another seed), and the cost of the
pre-registered first rung (prereg rungs[0] steps) of the same config, estimated from --steps timed
training steps (warm per-step time x rung; cold adds the measured compile). Context and batch
default to the `full` race preset, whose first rung this is.
"""
from __future__ import annotations

import argparse
import json
import sys
import time


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from igla_jax.training.models.config import FAMILIES
    ap = argparse.ArgumentParser(prog="python -m experiments.proxy_score", description=__doc__.split("\n\n")[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", choices=FAMILIES, required=True, help="model family")
    ap.add_argument("--width", type=int, required=True, help="model width (a multiple of --head-dim)")
    ap.add_argument("--depth", type=int, required=True, help="number of blocks")
    ap.add_argument("--context", type=int, default=None, help="context length (default: the full preset's)")
    ap.add_argument("--batch", type=int, default=None, help="batch size (default: the full preset's)")
    ap.add_argument("--head-dim", type=int, default=32, help="attention head dimension (default 32)")
    ap.add_argument("--seed", type=int, default=0, help="init and minibatch seed (default 0)")
    ap.add_argument("--steps", type=int, default=64, help="training steps timed for the rung estimate (default 64)")
    args = ap.parse_args(argv)
    for f in ("width", "depth", "steps"):
        if getattr(args, f) < 1:
            ap.error(f"--{f} {getattr(args, f)}: must be >= 1")
    return args


def measure(args: argparse.Namespace) -> dict:
    import jax
    from accelerators.zero_cost_proxies import score_models
    from igla_jax.evidence.prereg import load_prereg
    from igla_jax.execution.presets import PRESETS
    from igla_jax.training.models import ModelConfig
    from igla_jax.training.step import TrainConfig, init_state
    from igla_jax.training.train import train_state_to

    full, rung = PRESETS["full"], load_prereg().rungs[0]
    context = args.context or full.context
    batch = args.batch or full.batch
    mc = ModelConfig(family=args.arch, width=args.width, depth=args.depth, context=context, head_dim=args.head_dim)
    t0 = time.perf_counter()
    sc = score_models([mc], [args.seed], batch=batch)
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    score_models([mc], [args.seed + 1], batch=batch)
    warm = time.perf_counter() - t0

    tc = TrainConfig(total_steps=rung, batch=batch, seed=args.seed)
    walls = []
    for _ in range(2):  # the first pass compiles, the second is the steady state
        st = init_state(mc, tc)
        t0 = time.perf_counter()
        st, status, _ = train_state_to(st, tc, args.steps)
        jax.block_until_ready(st.params)
        walls.append(time.perf_counter() - t0)
    per_step = walls[1] / args.steps
    compile_s = max(0.0, walls[0] - walls[1])
    rung_warm = per_step * rung
    rung_cold = rung_warm + compile_s
    return {
        "config": {"family": args.arch, "width": args.width, "depth": args.depth, "context": context,
                   "batch": batch, "head_dim": args.head_dim, "seed": args.seed},
        "scores": {"synflow": float(sc["synflow"][0]), "grad_norm": float(sc["grad_norm"][0]),
                   "params_non_embedding": int(sc["params"][0])},
        "score_seconds_cold_incl_compile": round(cold, 4),
        "score_seconds_warm": round(warm, 4),
        "rung_steps": rung,
        f"train_seconds_{args.steps}_steps_warm": round(walls[1], 4),
        "train_compile_seconds": round(compile_s, 4),
        f"rung_seconds_estimated_from_{args.steps}_steps_warm": round(rung_warm, 3),
        f"rung_seconds_estimated_from_{args.steps}_steps_cold_incl_compile": round(rung_cold, 3),
        "cost_ratio_warm": round(warm / rung_warm, 6),
        "cost_ratio_cold_incl_compile": round(cold / rung_cold, 6),
        "goal_cost_ratio_max": 0.01,
        "train_status": status,
        "device": jax.devices()[0].device_kind,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from igla_jax.training.models.config import ConfigError
    try:
        out = measure(args)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
