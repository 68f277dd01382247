"""The hypothesis harness: every method replayed on one curve table and one simulated budget (issue 11).

  python -m experiments.hypothesis --table assertions/curves_tenth.jsonl   # 100 repeats at 1 worker, 20 at 4 and 16
  python -m experiments.hypothesis --table T --workers 1 4 16 --methods uniform_grid asha asha+v5
  python -m experiments.hypothesis --synthetic 0   # the cost check on a synthetic table (runs/hypothesis_synthetic.json)

Baselines: uniform_grid (the seed's v2.0 grid), random_full (random search at full fidelity), asha
(every accelerator off); ours: asha+v5 (= every enabled accelerator today); peers with --peers
(experiments.harness.peers, optional). Prints per method and worker count the median simulated time until
regret <= harness_regret_tol with its bootstrap interval (repeats and the table's configs
resampled), the share of repeats that never get there, the speed-ups against the uniform grid and
ASHA with the paired sign test's p, then H(1) and H(2) (definitions: experiments/harness/judge.py and
assertions/preregistration.json). Writes the JSON (--out) and one regret plot per worker count (--plots).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m experiments.hypothesis", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--table", type=Path, help="the recorded curve table (its manifest beside it)")
    src.add_argument("--synthetic", type=int, metavar="SEED",
                     help="a synthetic table of the recorded table's size (384 configs + 96 extra-seed runs; "
                          "experiments.harness.tables): the cost check, no claims")
    ap.add_argument("--repeats", type=int, default=100, help="repeats at 1 worker (default 100)")
    ap.add_argument("--repeats-multi", type=int, default=20, help="repeats at more than 1 worker (default 20)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 4, 16], help="simulated workers (default 1 4 16)")
    ap.add_argument("--methods", nargs="+", default=None, help="methods to replay (default: every registered one)")
    ap.add_argument("--peers", action="store_true", help="also load the peer adapters (experiments.harness.peers), if installed")
    ap.add_argument("--jobs", type=int, default=1,
                    help="processes replaying (method, worker count) pairs in parallel (default 1; results identical)")
    ap.add_argument("--draws", type=int, default=1000, help="bootstrap draws (default 1000)")
    ap.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    ap.add_argument("--out", type=Path, default=None, help="result JSON (default assertions/hypothesis.json; "
                                                           "with --synthetic runs/hypothesis_synthetic.json)")
    ap.add_argument("--plots", type=Path, default=None,
                    help="directory for hypothesis_regret_w<N>.png (default assertions; with --synthetic runs)")
    return ap.parse_args(argv)


def progress(m: str, w: int, wall: list[float]) -> None:
    print(f"  {m:<14} {w:>2} worker(s): {len(wall)} repeats in {sum(wall):.1f} s ({1000 * sum(wall) / len(wall):.0f} "
          f"ms a race, slowest {1000 * max(wall):.0f} ms)", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if (args.repeats < 1 or args.repeats_multi < 1 or args.draws < 10 or any(w < 1 for w in args.workers)
            or args.jobs < 1):
        print("error: --repeats, --repeats-multi and --jobs must be >= 1, --draws >= 10, --workers >= 1",
              file=sys.stderr)
        return 2
    from experiments import harness as H
    from experiments.harness import report as R
    from experiments.harness import replay_methods  # noqa: F401  (registers ours and the baselines)
    try:
        from experiments.harness import replay_methods_v4  # noqa: F401  (V4: needs xgboost)
        from experiments.harness import replay_default  # noqa: F401  (race_default: the verdicts' race)
    except ImportError as e:
        print(f"note: asha+v4 not registered ({e})", file=sys.stderr)
    from igla_jax.curves.table import CurveError, manifest_path, read_manifest
    from igla_jax.evidence.prereg import load_prereg
    from igla_jax.execution.presets import RaceSetupError
    from igla_jax.execution.replay import load_table
    synthetic = args.synthetic is not None
    notes = [n for n in [H.load_peers() if args.peers else None] if n]
    for n in notes:
        print(f"note: {n}", file=sys.stderr)
    methods = args.methods or list(H.METHODS)
    unknown = [m for m in methods if m not in H.METHODS]
    if unknown:
        print(f"error: --methods {unknown}: not registered (known: {', '.join(H.METHODS)})", file=sys.stderr)
        return 2
    try:
        manifest = None
        if synthetic:
            from experiments.harness.tables import tenth_table
            table = tenth_table(args.synthetic)
            notes.append(f"synthetic table (experiments.harness.tables.tenth_table({args.synthetic})): "
                         "a cost check, not a claim")
        else:
            table = load_table(args.table)
            manifest = read_manifest(manifest_path(args.table))
        print(f"{table.name}: {len(table.runs)} runs; replaying {', '.join(methods)}", file=sys.stderr)
        doc = R.run_hypothesis(
            table, load_prereg(), manifest=manifest, methods=methods, draws=args.draws, seed=args.seed,
            repeats={w: (args.repeats if w == 1 else args.repeats_multi) for w in dict.fromkeys(args.workers)},
            plot_dir=args.plots or Path("runs" if synthetic else "assertions"), notes=notes, progress=progress,
            jobs=args.jobs,
            command="python -m experiments.hypothesis " + " ".join(sys.argv[1:] if argv is None else argv))
    except (CurveError, H.HarnessError, RaceSetupError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = args.out or Path("runs/hypothesis_synthetic.json" if synthetic else "assertions/hypothesis.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print("\n".join(R.lines(doc)))
    print(f"wrote {out} and {', '.join(doc['plots'])}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
