"""Audit the assertion registry: python -m experiments.audit [--registry PATH] [--proofs DIR] [--no-coq]."""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from rich.console import Console

from igla_jax.evidence.audit import render, run_audit
from igla_jax.evidence.coq import compile_proofs, coq_unavailable
from igla_jax.evidence.prereg import repo_root
from igla_jax.evidence.registry import RegistryError, load_registry


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m experiments.audit",
        description="Check assertions/igla_assertions.json against Coq and the code: compile proofs/ "
                    "(into a temporary directory), ask Coq `Print Assumptions` for every registered "
                    "lemma (status Proven requires it closed), import every runtime check and find "
                    "every named pytest test (parsed, not run). Prints a table; exits 1 on any "
                    "mismatch, naming the entry, 2 on bad arguments or an unreadable registry.")
    ap.add_argument("--root", type=Path, default=None,
                    help="repository root that coq_file and test paths are relative to (default: this repository)")
    ap.add_argument("--registry", type=Path, default=None,
                    help="registry JSON (default: ROOT/assertions/igla_assertions.json)")
    ap.add_argument("--proofs", type=Path, default=None,
                    help="directory holding _CoqProject (default: ROOT/proofs)")
    ap.add_argument("--no-coq", action="store_true", help="skip compiling and querying Coq")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    root = (args.root or repo_root()).resolve()
    registry = args.registry or root / "assertions" / "igla_assertions.json"
    proofs = args.proofs or root / "proofs"
    console = Console(width=None if sys.stdout.isatty() else 200)
    try:
        entries = load_registry(registry)
        note = "--no-coq given: Coq part skipped" if args.no_coq else coq_unavailable()
        with tempfile.TemporaryDirectory(prefix="igla-audit-") as tmp:
            build = None if note else compile_proofs(proofs, tmp)
            report = run_audit(entries, root=root, build=build, coq_note=note)
    except RegistryError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    render(report, console)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
