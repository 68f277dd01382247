"""Summarise a recorded learning-curve table and draw its curves.

  python -m experiments.curves --table assertions/curves_tenth.jsonl [--plot assertions/plots] [--json]

Prints: runs per family and stratum, diverged runs, the best and median top-rung validation BPB per
family, the across-seed spread at the top rung (configs recorded on several seeds), and for every
rung the rank agreement with the top rung (Spearman, Kendall, share of crossing pairs: how well an
early rung predicts the last). Writes one PNG of every curve per family beside a rung-1 vs top-rung
scatter. The rungs come from the table's manifest.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m experiments.curves", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--table", type=Path, default=Path("assertions/curves_tenth.jsonl"), help="the curve table")
    ap.add_argument("--plot", type=Path, default=None, help="directory for the PNG (default: no plot)")
    ap.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    args = ap.parse_args(argv)
    from igla_jax.curves.stats import plot_curves, summary
    from igla_jax.curves.table import CurveError, read_table
    manifest = args.table.with_name(args.table.name.replace(".jsonl", "") + ".manifest.json")
    try:
        table = read_table(args.table)
        rungs = json.loads(manifest.read_text())["rungs"]
    except (CurveError, OSError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not table.rows:
        print(f"error: {args.table} holds no runs yet", file=sys.stderr)
        return 2
    s = summary(table, rungs)
    if args.json:
        print(json.dumps(s))
    else:
        print(f"{args.table}: {s['runs']} runs; rungs {rungs}")
        print(f"{'family':<8} {'phi':>4} {'uniform':>8} {'diverged':>9} {'best top BPB':>13} {'median':>8}  best config")
        for fam, f in s["families"].items():
            best = "" if f["best_config"] is None else " ".join(f"{k}={v}" for k, v in f["best_config"].items() if k != "family")
            print(f"{fam:<8} {f['configs']['phi']:>4} {f['configs']['uniform']:>8} {f['diverged']:>9} "
                  f"{f['best_top_bpb'] if f['best_top_bpb'] is None else round(f['best_top_bpb'], 4):>13} "
                  f"{f['median_top_bpb'] if f['median_top_bpb'] is None else round(f['median_top_bpb'], 4):>8}  {best}")
        sp = s["seed_spread_top"]
        print(f"seed spread at step {rungs[-1]}: {sp['configs']} configs on >= 2 seeds, pooled sd {sp['pooled_sd']:.4f}, "
              f"median {sp['median_sd']:.4f}, max {sp['max_sd']:.4f} BPB")
        print("rank agreement with the top rung (primary seed; diverged runs rank last):")
        for fam, by_rung in s["rank_vs_top"].items():
            cells = "  ".join(f"step {k}: rho {v['spearman']:+.2f} tau {v['kendall']:+.2f} cross {v['crossing_share']:.0%}"
                              for k, v in by_rung.items())
            print(f"  {fam:<7} (n={int(next(iter(by_rung.values()))['n'])}) {cells}")
    if args.plot is not None:
        for p in plot_curves(table, rungs, args.plot, args.table.stem):
            print(f"wrote {p}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
