"""Train one model and report its validation BPB at the last step, its size and its speed.

    python -m experiments.train --arch attn --width 128 --depth 4 --context 64 --batch 12 \\
        --steps 2000 --seed 42 [--json] [--save CKPT] [--resume CKPT] [--matmul-dtype bfloat16]

BPB is measured once, on every byte of the validation half of the held-out data, at exactly
--steps (never a minimum over the run). --test also scores the test half: for a headline figure
that claims final quality, never for choosing anything. --json prints one JSON object as the
last line of output.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from igla_jax.training.checkpoint import CheckpointError
from igla_jax.training.data import DataError
from igla_jax.training.models import FAMILIES, MATMUL_DTYPES, ConfigError, ModelConfig
from igla_jax.training.progress import StepProgress
from igla_jax.training.step import TrainConfig
from igla_jax.training.train import run_trial


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m experiments.train", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="attn", help=f"model family: {', '.join(FAMILIES)}")
    ap.add_argument("--width", type=int, default=128, help="model width d (multiple of --head-dim)")
    ap.add_argument("--depth", type=int, default=4, help="number of blocks")
    ap.add_argument("--context", type=int, default=64, help="context length in bytes")
    ap.add_argument("--head-dim", type=int, default=32, help="attention head dimension (fixed under muP)")
    ap.add_argument("--param", default="mup", help="parametrization: mup or sp")
    ap.add_argument("--batch", type=int, default=12, help="sequences per step")
    ap.add_argument("--steps", type=int, default=2000, help="training steps (BPB is measured at this step)")
    ap.add_argument("--horizon", type=int, default=None, help="lr-schedule horizon (default: --steps)")
    ap.add_argument("--lr", type=float, default=TrainConfig.lr, help="peak (muP base) Adam lr")
    ap.add_argument("--beta1", type=float, default=TrainConfig.beta1)
    ap.add_argument("--beta2", type=float, default=TrainConfig.beta2)
    ap.add_argument("--wd", type=float, default=TrainConfig.weight_decay, help="decoupled weight decay")
    ap.add_argument("--warmup", type=float, default=TrainConfig.warmup_frac, help="warmup fraction of the horizon")
    ap.add_argument("--dropout", type=float, default=0.0)
    ap.add_argument("--ema-beta", type=float, default=ModelConfig.ema_beta, help="jepa target EMA decay")
    ap.add_argument("--jepa-lambda", type=float, default=ModelConfig.jepa_lambda, help="jepa latent-loss weight")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--matmul-dtype", default=ModelConfig.matmul_dtype, choices=MATMUL_DTYPES,
                    help="operand dtype of the dense layers' matmuls, float32 accumulation either way "
                         "(bfloat16: faster on CPUs with AVX-512 BF16; default float32, as every recorded result)")
    ap.add_argument("--save", default=None, help="write a checkpoint here at the end")
    ap.add_argument("--resume", default=None, help="continue from this checkpoint")
    ap.add_argument("--test", action="store_true",
                    help="also report test-half BPB (for quality claims only; never choose settings on it)")
    ap.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    a = parse(argv)
    try:
        if a.steps < 1:
            raise ConfigError(f"--steps={a.steps}: must be >= 1")
        model_cfg = ModelConfig(family=a.arch, width=a.width, depth=a.depth, context=a.context,
                                head_dim=a.head_dim, param=a.param, dropout=a.dropout,
                                ema_beta=a.ema_beta, jepa_lambda=a.jepa_lambda, matmul_dtype=a.matmul_dtype)
        train_cfg = TrainConfig(lr=a.lr, beta1=a.beta1, beta2=a.beta2, weight_decay=a.wd,
                                warmup_frac=a.warmup, total_steps=a.horizon or a.steps,
                                batch=a.batch, seed=a.seed)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"config: {json.dumps({'model': dataclasses.asdict(model_cfg), 'train': dataclasses.asdict(train_cfg)})}",
          file=sys.stderr)
    try:
        with StepProgress(f"{a.arch} d={a.width}x{a.depth}", a.steps) as bar:
            res = run_trial(model_cfg, train_cfg, to_step=a.steps, from_checkpoint=a.resume,
                            save_checkpoint=a.save, progress=bar.update, eval_test=a.test)
    except (CheckpointError, ConfigError, DataError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = {"val_bpb": res.val_bpb, "params": res.params, "tokens_per_s": round(res.tokens_per_s, 1),
           "steps": res.step, "status": res.status, "wall_s": round(res.wall_s, 2),
           "train_bits_last_chunk": res.train_bits, "arch": a.arch, "seed": a.seed}
    if a.test:
        out["test_bpb"] = res.test_bpb
    if a.json:
        print(json.dumps(out))
    else:
        test = f"test_bpb {res.test_bpb:.4f}  " if res.test_bpb is not None else ""
        print(f"status {res.status}  step {res.step}  val_bpb {res.val_bpb:.4f} bits/byte  {test}"
              f"params {res.params:,}  {res.tokens_per_s:,.0f} tokens/s  ({res.wall_s:.1f} s)")
    return 0 if res.status == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
