"""V1 lr-transfer study: 5 x 5 (lr, beta1) sweep at a width-16 proxy, lr axis at widths 128 and 256.

    python -m experiments.mup_transfer [--arch attn|jepa|hybrid|all] [--param mup|sp|both]
        [--steps 128] [--batch 12] [--context 32] [--out assertions/mup_transfer.json]
        [--plots coord_check/plots]

Scores every run by its final training loss (mean training bits over the last 32 steps), writes
the study JSON that `accelerators.mup_transfer.transfer_lr` reads, one muTransfer figure per
family (<plots>/mup_transfer_<family>.png) and prints the transfer table and the cost ratio.
Exit 0 when the muP transfer holds for every family (best lr within the pre-registered
lr_transfer_max_shift 2x grid steps of the proxy's), 1 otherwise.
"""
from __future__ import annotations

import argparse
import shlex
import sys

from accelerators.mup_transfer import TransferConfig, run_study, transfer_verdict, write_study
from igla_jax.evidence.prereg import PreregError, load_prereg
from igla_jax.training.models import FAMILIES, ConfigError


def parse(argv: list[str] | None) -> argparse.Namespace:
    d = TransferConfig()
    ap = argparse.ArgumentParser(prog="python -m experiments.mup_transfer", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="all", choices=[*FAMILIES, "all"])
    ap.add_argument("--param", default="both", choices=["mup", "sp", "both"], help="sp is the control")
    ap.add_argument("--proxy-width", type=int, default=d.proxy_width)
    ap.add_argument("--target-widths", type=int, nargs="+", default=list(d.target_widths))
    ap.add_argument("--steps", type=int, default=d.steps, help="training steps of every run")
    ap.add_argument("--batch", type=int, default=d.batch)
    ap.add_argument("--context", type=int, default=d.context)
    ap.add_argument("--out", default=None, help="study JSON (default assertions/mup_transfer.json)")
    ap.add_argument("--plots", default="coord_check/plots", help="directory for the figures ('' for none)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    a = parse(argv)
    try:
        cfg = TransferConfig(families=tuple(FAMILIES) if a.arch == "all" else (a.arch,),
                             params=("mup", "sp") if a.param == "both" else (a.param,),
                             proxy_width=a.proxy_width, target_widths=tuple(a.target_widths),
                             steps=a.steps, batch=a.batch, context=a.context)
        prereg = load_prereg()
    except (ConfigError, PreregError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    cmd = "python -m experiments.mup_transfer " + " ".join(shlex.quote(x) for x in (argv or sys.argv[1:]))
    study = run_study(cfg, progress=lambda m: print(m, file=sys.stderr, flush=True), command=cmd.strip(),
                      prereg=prereg)
    print(f"wrote {write_study(study, a.out)}  ({study['wall_s']:.0f} s)")
    if a.plots:
        from coord_check.plot import plot_transfer
        for f in cfg.families:
            print(f"wrote {plot_transfer(study, f, f'{a.plots}/mup_transfer_{f}.png')}")
    for f, by_param in study["families"].items():
        for p, s in by_param.items():
            b = s["proxy"]["best"]
            cells = "  ".join(f"w{w}: best lr {t['best_lr']} (shift {t['shift']})" for w, t in s["targets"].items())
            print(f"{f:6s} {p:3s} proxy w{cfg.proxy_width} best lr {b['lr']:g} beta1 {b['beta1']:g}  {cells}")
    for k, v in study["cost"].items():
        if isinstance(v, dict):
            print(f"cost {k}: {v}")
    if "mup" not in cfg.params:
        return 0
    v = transfer_verdict(study, "mup", prereg)
    print(("PASS " if v.enabled else "FAIL ") + v.line())
    return 0 if v.enabled else 1


if __name__ == "__main__":
    sys.exit(main())
