"""Record the table's truth on seeds nothing selects on: the best configs of a curve table on its extra seeds.

  python -m experiments.record_truth                       # assertions/curves_tenth_truth.jsonl (resumable)
  python -m experiments.record_truth --budget 30m          # stop cleanly before a run once 30 min passed
  python -m experiments.record_truth --dry-run             # print the selection and the estimated cost
  python -m experiments.record_truth --report              # how many configs lie near the best under the truth

Selection (issue 21, fixed before any run): every config whose primary-seed top-rung validation BPB
lies within --within (0.10) of the table's best, and at least the --top (32) best of each stratum.
Each selected config is trained on the table's two extra seeds (the search seeds of race seeds 43
and 44; the primary seed is the one every method selects on), unless the table already holds that
run. Rows go to a separate truth file in the table's row format, so the committed table's sha256
(and every verdict file that carries it) stays valid. "True BPB" of a config is then the mean of its
extra-seed top-rung BPBs (`igla_jax.curves.truth`), which no method sees.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from igla_jax.evidence.prereg import repo_root

DEFAULT_TABLE = repo_root() / "assertions" / "curves_tenth.jsonl"


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="python -m experiments.record_truth", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--table", type=Path, default=DEFAULT_TABLE, help="the curve table (default the committed tenth)")
    ap.add_argument("--out", type=Path, default=None, help="truth file (default <table>_truth.jsonl beside it)")
    ap.add_argument("--within", type=float, default=0.10, help="BPB distance from the table's best (default 0.10)")
    ap.add_argument("--top", type=int, default=32, help="at least this many best configs per stratum (default 32)")
    ap.add_argument("--budget", default=None, help="stop before starting a run once this much time passed")
    ap.add_argument("--dry-run", action="store_true", help="print the selection and its recorded cost, train nothing")
    ap.add_argument("--report", action="store_true",
                    help="train nothing; print how many configs lie within 0.02/0.05/0.10 of the best under the truth")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from igla_jax import curves
    from igla_jax.curves.table import CurveError, PlannedRun
    from igla_jax.curves.truth import TruthError, selection, truth_path
    from igla_jax.execution.presets import PRESETS, RaceSetupError, parse_budget
    try:
        budget = parse_budget(args.budget) if args.budget else None
        table = curves.read_table(args.table)
        info = curves.read_manifest(curves.manifest_path(args.table))
        chosen = selection(table.rows, within=args.within, top=args.top)
    except (RaceSetupError, CurveError, TruthError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    extra = [int(s) for s in info["seeds"]["extra"]]
    out = args.out or truth_path(args.table)
    if args.report:
        return report(table.rows, out, extra)
    have = {(r["config_id"], r["seed"]) for r in table.rows}
    writer = None if args.dry_run else curves.TableWriter(out)
    done = have | (writer.done if writer else set())
    todo = [PlannedRun(r_cfg, stratum, s, "extra") for r_cfg, stratum in chosen for s in extra
            if (r_cfg.config_id, s) not in done]
    prim = {r["config_id"]: r for r in table.rows if r["seed_role"] == "primary"}
    cost = sum(sum(prim[c.config_id]["segment_s"]) + sum(prim[c.config_id]["eval_s"]) for c, _, _, _ in
               ((p.config, p.stratum, p.seed, p.seed_role) for p in todo))
    print(f"{len(chosen)} configs selected (within {args.within} of the best, or in the {args.top} best of their "
          f"stratum); {len(todo)} extra-seed runs to record into {out} (about {cost / 60:.0f} min of recorded "
          "training time on one idle core)", file=sys.stderr, flush=True)
    if args.dry_run:
        return 0
    from igla_jax.evidence.ledger_row import code_version
    ps = PRESETS[info["preset"]]
    ladder, horizon = tuple(info["ladder"]), int(info["lr_horizon"])
    version = code_version()
    t_start = time.monotonic()
    for k, run in enumerate(todo):
        if budget is not None and time.monotonic() - t_start >= budget:
            print("budget reached; rerun the same command to continue", file=sys.stderr)
            break
        t0 = time.monotonic()
        row = curves.record_run(run, context=ps.context, batch=ps.batch, head_dim=ps.space.head_dim,
                                horizon=horizon, ladder=ladder, version=version)
        writer.append(row)
        b = row["val_bpb"][-1]
        print(f"[{k + 1}/{len(todo)}] {run.config.short()} seed {run.seed}: {row['status']} val BPB @{ladder[-1]} "
              f"{b if b is None else round(b, 4)} ({time.monotonic() - t0:.1f} s)", file=sys.stderr, flush=True)
    return 0


def report(rows, out: Path, extra: list[int]) -> int:
    """Print the truth's closeness counts: configs within 0.02/0.05/0.10 of the best, by stratum."""
    from collections import Counter

    from igla_jax import curves
    from igla_jax.curves.truth import true_bpb
    try:
        truth_rows = curves.read_table(out).rows
    except curves.CurveError as e:
        print(f"error: {e} (record it first: python -m experiments.record_truth)", file=sys.stderr)
        return 2
    tb = true_bpb(list(rows) + list(truth_rows), extra_seeds=extra)
    if not tb:
        print(f"error: {out}: no config recorded on both extra seeds {extra}", file=sys.stderr)
        return 2
    prim = {r["config_id"]: r for r in rows if r["seed_role"] == "primary"}
    order = sorted(tb, key=lambda c: (tb[c], c))
    best = order[0]
    print(f"{len(tb)} configs have a truth (mean top-rung validation BPB over extra seeds {extra}); {out}")
    print(f"best by truth: {prim[best]['stratum']} {best} {prim[best]['config']}: truth {tb[best]:.4f}, "
          f"primary seed {prim[best]['val_bpb'][-1]:.4f}")
    for tol in (0.02, 0.05, 0.10):
        near = [c for c in order if tb[c] <= tb[best] + tol]
        by = Counter(prim[c]["stratum"] for c in near)
        print(f"within {tol:.2f} of the best: {len(near)} configs ({', '.join(f'{k} {v}' for k, v in sorted(by.items()))})")
    pb = min((c for c in tb if prim[c]["status"] == "ok"), key=lambda c: (prim[c]["val_bpb"][-1], c))
    print(f"best by the primary seed among them: {pb} (truth rank {order.index(pb) + 1} of {len(order)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
