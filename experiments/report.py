"""Draw a race's report again: report.png and report.html from its --out folder.

  python -m experiments.report runs/race-42-quick           # the folder a race wrote (ledger.jsonl, race.json)

Every race with an --out draws its report at the end; this redraws it on demand, for example for a
race that was stopped (its report then says the race has not finished and draws the ledger so far).
The picture: every trial's validation BPB against steps with promotions and prunes marked, the best
BPB so far against race time (simulated in a replay), the champion's from-scratch runs on validation
and test, and each accelerator's verdict.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m experiments.report", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("run_dir", type=Path, help="a race's --out folder")
    a = ap.parse_args(argv)
    from igla_jax.execution.run_report import ReportError, headline, render
    if not a.run_dir.is_dir():
        print(f"error: {a.run_dir}: not a folder; give a race's --out folder", file=sys.stderr)
        return 2
    try:
        png, page = render(a.run_dir)
    except ReportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    import json
    sp = a.run_dir / "summary.json"
    for line in headline(json.loads(sp.read_text()) if sp.exists() else None):
        print(line)
    print(f"report: {png}\n        {page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
