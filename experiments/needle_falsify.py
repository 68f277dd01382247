"""Every failure mode of the seed plan, fed to the function the race uses, and shown caught (issue 14).

  python -m experiments.needle_falsify               # prints the table (mode, input, expected, observed, rule)
  python -m experiments.needle_falsify --out DIR     # also writes DIR/needle_falsify.json
  python -m experiments.needle_falsify --json        # the JSON on stdout instead of the table

Exits 0 only when every mode is caught and every clean twin accepted; modes whose accelerator is
not built yet (V4, V7 today) report "not built", so today it exits 1. No training runs. The
logic is experiments/witness/; each mode's test is tests/test_witness.py::test_falsify_<mode>.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m experiments.needle_falsify", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=None, help="directory for needle_falsify.json")
    ap.add_argument("--json", action="store_true", help="print the JSON instead of the table")
    args = ap.parse_args(argv)
    from experiments.witness.registry import run_all, table_lines
    report = run_all()
    text = json.dumps(report.to_json(), indent=1)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "needle_falsify.json").write_text(text + "\n", encoding="utf-8")
    print(text if args.json else "\n".join(table_lines(report)))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
