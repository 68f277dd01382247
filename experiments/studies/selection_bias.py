"""Selection bias of the victory rule: measure the seed spread on real runs, then simulate a race's selection.

  python -m experiments.selection_bias --measure     # 5 quick-shape configs x 3 seeds x 900 steps -> assertions/seed_spread.json
  python -m experiments.selection_bias --simulate    # false-positive rates at k = 27 and 81 -> assertions/selection_bias.json

The simulation (igla_jax.evidence.selection_bias) puts every one of k configs at the null (true mean BPB =
mu0), selects the lowest validation score of k runs on one seed, then applies the victory rule
three ways: the old rule (the selected run's own validation score is one of the three samples),
the test split alone (the selected run's test score is one of them), and the new rule (three
fresh from-scratch runs, judged on the test half). Seed and evaluation noise come from --measure.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from igla_jax.evidence.prereg import load_prereg, repo_root

SPREAD = repo_root() / "assertions" / "seed_spread.json"
RESULT = repo_root() / "assertions" / "selection_bias.json"
SEEDS = (42, 43, 44)


def measure(out: Path, *, n_configs: int, steps: int) -> dict:
    from igla_jax.execution.presets import PRESETS
    from igla_jax.search.search_space import sample
    from igla_jax.training.train import run_trial
    ps = PRESETS["quick"]
    fams = ("attn", "jepa", "hybrid")
    configs = [sample(7, fams[i % 3], n_configs, ps.space)[i] for i in range(n_configs)]
    runs = []
    for i, cfg in enumerate(configs):
        for s in SEEDS:
            t0 = time.perf_counter()
            r = run_trial(cfg.to_model_config(context=ps.context, head_dim=ps.space.head_dim),
                          cfg.to_train_config(seed=s, total_steps=steps, batch=ps.batch), to_step=steps, eval_test=True)
            runs.append({"config_id": cfg.config_id, "config": cfg.to_dict(), "seed": s, "step": steps,
                         "status": r.status, "val_bpb": r.val_bpb, "test_bpb": r.test_bpb,
                         "wall_s": round(time.perf_counter() - t0, 2)})
            print(f"[{len(runs)}/{n_configs * len(SEEDS)}] {cfg.short()} seed {s}: val {r.val_bpb:.4f} "
                  f"test {r.test_bpb if r.test_bpb is None else round(r.test_bpb, 4)} ({runs[-1]['wall_s']} s)",
                  file=sys.stderr, flush=True)
    doc = {"command": f"python -m experiments.selection_bias --measure --configs {n_configs} --steps {steps}",
           "preset_shape": {"context": ps.context, "batch": ps.batch}, "seeds": list(SEEDS), "runs": runs}
    out.write_text(json.dumps(doc, indent=1) + "\n")
    return doc


def simulate(spread: dict, *, ks: list[int], draws: int, sd_extra: list[float]) -> dict:
    from igla_jax.evidence.selection_bias import estimate_noise, false_positive_rates
    pr = load_prereg()
    recs = [(r["config_id"], r["seed"], r["val_bpb"], r["test_bpb"]) for r in spread["runs"] if r["status"] == "ok"]
    sd_seed, sd_eval = estimate_noise(recs)
    settings = [("measured", sd_seed, sd_eval)] + [(f"sd {s:g} (seed only)", s, 0.0) for s in sd_extra]
    rows = []
    for label, ss, se in settings:
        for k in ks:
            fpr = false_positive_rates(pr, k=k, sd_seed=ss, sd_eval=se, draws=draws, seed=0)
            rows.append({"noise": label, "sd_seed": ss, "sd_eval": se, "k": k, **fpr})
    return {"command": "python -m experiments.selection_bias --simulate", "draws": draws, "alpha": pr.alpha,
            "measured": {"sd_seed": sd_seed, "sd_eval": sd_eval, "runs": len(recs)}, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m experiments.selection_bias", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--measure", action="store_true", help="train the configs x seeds and write --spread")
    ap.add_argument("--simulate", action="store_true", help="simulate the false-positive rates from --spread")
    ap.add_argument("--configs", type=int, default=5, help="configs to measure (default 5)")
    ap.add_argument("--steps", type=int, default=900, help="training steps per run (default 900, quick's last rung)")
    ap.add_argument("--spread", type=Path, default=SPREAD, help=f"seed-spread file (default {SPREAD})")
    ap.add_argument("--out", type=Path, default=RESULT, help=f"simulation result (default {RESULT})")
    ap.add_argument("--draws", type=int, default=400_000, help="simulated races per setting (default 400,000)")
    ap.add_argument("--k", type=int, nargs="+", default=[27, 81], help="configs selected from (default 27 81)")
    args = ap.parse_args(argv)
    if not (args.measure or args.simulate):
        ap.error("choose --measure, --simulate or both")
    if args.configs < 2 or args.steps < 1:
        ap.error("--configs must be >= 2 and --steps >= 1")
    if args.measure:
        measure(args.spread, n_configs=args.configs, steps=args.steps)
    if args.simulate:
        try:
            spread = json.loads(args.spread.read_text())
        except (OSError, ValueError) as e:
            print(f"error: {args.spread}: cannot read the seed-spread file ({e}); run --measure first", file=sys.stderr)
            return 2
        res = simulate(spread, ks=args.k, draws=args.draws, sd_extra=[0.05])
        args.out.write_text(json.dumps(res, indent=1) + "\n")
        m = res["measured"]
        print(f"measured on {m['runs']} runs: sd_seed {m['sd_seed']:.4f} BPB, sd_eval {m['sd_eval']:.4f} BPB")
        print(f"{'noise':<22} {'k':>4} {'old rule':>10} {'test only':>10} {'new rule':>10}   (alpha {res['alpha']})")
        for r in res["rows"]:
            print(f"{r['noise']:<22} {r['k']:>4} {r['old']:>10.4f} {r['test_split_only']:>10.4f} {r['new']:>10.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
