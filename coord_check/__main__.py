"""muP coord check: train a few steps on one fixed batch at several widths, fit log-log slopes.

    python -m coord_check [--arch attn|jepa|hybrid|all] [--widths 8 16 32 64] [--steps 5]
        [--param mup|sp] [--seeds 3] [--lr 0.01] [--out coord_check/plots]

Writes <out>/coord_check_<param>_<family>.png (one panel per step t = 1..steps; t = 1 is the
initialisation, t = k follows k - 1 Adam updates) and <out>/coord_check_<param>.json (every slope).
Exit 0 when every |slope| < mup_slope_max (assertions/preregistration.json), 1 otherwise (the
worst layers are named), 2 on a bad flag.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from accelerators.mup_transfer import mup_verdict
from coord_check.core import DEFAULT_WIDTHS, CoordCheckConfig, run_coord_check
from igla_jax.evidence.prereg import PreregError
from igla_jax.training.models import FAMILIES, ConfigError


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m coord_check", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="all", choices=[*FAMILIES, "all"], help="model family, or all three")
    ap.add_argument("--widths", type=int, nargs="+", default=list(DEFAULT_WIDTHS), help="widths (multiples of 8)")
    ap.add_argument("--steps", type=int, default=CoordCheckConfig.steps, help="recorded steps t = 1..steps")
    ap.add_argument("--param", default="mup", choices=["mup", "sp"], help="parametrization (sp is the control)")
    ap.add_argument("--seeds", type=int, default=CoordCheckConfig.seeds, help="seeds per width")
    ap.add_argument("--lr", type=float, default=CoordCheckConfig.lr, help="Adam base lr (larger than usual)")
    ap.add_argument("--out", default="coord_check/plots", help="directory for the PNGs and the JSON")
    ap.add_argument("--no-plot", action="store_true", help="write the JSON only")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    a = parse(argv)
    fams = tuple(FAMILIES) if a.arch == "all" else (a.arch,)
    try:
        cfg = CoordCheckConfig(families=fams, widths=tuple(a.widths), steps=a.steps, seeds=a.seeds,
                               param=a.param, lr=a.lr)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    result = run_coord_check(cfg, progress=lambda m: print(m, file=sys.stderr, flush=True))
    try:
        verdict = mup_verdict(result)
    except PreregError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    stat = verdict.statistic if math.isfinite(verdict.statistic) else None
    doc = {**result.to_json(), "verdict": {"enabled": verdict.enabled, "statistic": stat,
                                           "threshold": verdict.threshold, "reason": verdict.reason}}
    (out / f"coord_check_{a.param}.json").write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    if not a.no_plot:
        from coord_check.plot import plot_family
        for f in fams:
            print(f"wrote {plot_family(result, f, out / f'coord_check_{a.param}_{f}.png')}", file=sys.stderr)
    for f, layer, t in result.excluded:
        print(f"excluded (exactly zero by construction): {f}/{layer} t={t}")
    for f, layer, t, s in result.worst(5):
        print(f"worst: {f}/{layer} t={t} slope {s:+.3f}")
    print(("PASS " if verdict.enabled else "FAIL ") + verdict.line())
    return 0 if verdict.enabled else 1


if __name__ == "__main__":
    sys.exit(main())
