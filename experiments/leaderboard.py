"""Print a race's leaderboard: python -m experiments.leaderboard --db out/race.db [--limit 10]."""
from __future__ import annotations

import argparse
import sys

from rich.console import Console
from rich.table import Table

from igla_jax.evidence.leaderboard import LeaderboardError, read_top


def _positive_int(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {s!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {v}")
    return v


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m experiments.leaderboard",
        description="Show a race's SQLite leaderboard (view v_igla_leaderboard): one row per trial, its "
                    "validation BPB (bits per byte) at its highest evaluated step, shown only when that step is "
                    ">= the pre-registered min_victory_step; never the best BPB over a trial's steps.")
    ap.add_argument("--db", required=True, help="path of the race database (race.db under the race's --out)")
    ap.add_argument("--limit", type=_positive_int, default=10, help="number of rows to show (default 10)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        rows, min_step = read_top(args.db, args.limit)
    except LeaderboardError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    where = f"step >= {min_step}" if min_step is not None else "the view's step threshold"
    table = Table(title=f"v_igla_leaderboard: top {args.limit} (each trial's last evaluation, {where}; "
                        "BPB = bits per byte)")
    for col, just in (("#", "right"), ("trial", "left"), ("config_id", "left"), ("family", "left"),
                      ("seed", "right"), ("step", "right"), ("bpb", "right")):
        table.add_column(col, justify=just)
    for i, r in enumerate(rows, 1):
        table.add_row(str(i), r.trial_id, r.config_id, r.family, str(r.seed), str(r.step), f"{r.bpb:.4f}")
    console = Console()
    if rows:
        console.print(table)
    else:
        console.print(f"no trial whose last evaluation has a finite BPB at {where} yet in {args.db}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
