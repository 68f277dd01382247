"""How often V3's falsifier catches a useless BOHB, and how often it lets a real one through (its power).

A falsifier that cannot fail proves nothing, and one without power hides a working accelerator. On
one table this replays N race seeds of plain ASHA, of ASHA with BOHB, and of ASHA with a *placebo*
BOHB (a uniform sampler on another random stream: exactly as useful as no BOHB), once each, then
draws --studies study-sized subsets of paired seeds (the study's --repeats, with replacement) and
applies the study's test (`accelerators.bohb.bohb_verdict`, regret at the pre-registered T) to each:

- placebo: the share of studies that disable it (should be about 1 - alpha / 7);
- BOHB: the share that enable it (the power on this table; 0 when BOHB does not help here).

    python -m experiments.v3_power --table assertions/curves_tenth.jsonl [--seeds 300] [--repeats 100]
    python -m experiments.v3_power --synthetic 0      # experiments.harness.tables.tenth_table(0)
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from igla_jax.search.interfaces import DrawState, Proposal, RandomSampler


@dataclasses.dataclass(frozen=True)
class Placebo:
    """A useless 'accelerator': uniform sampling like the baseline, on another random stream."""
    space: Any
    name: str = "placebo"

    def init(self, seed: int) -> DrawState:
        return DrawState(seed=int(seed) + 1_000_003)

    def propose(self, state: DrawState, race: Any, family: str, n: int) -> Proposal:
        return RandomSampler(self.space).propose(state, race, family, n)


def regrets(table: Any, seeds: int, prereg: Any, progress: Any = None) -> dict[str, Any]:
    """Regret at T of every seed for asha, asha+v3 and the placebo (T from plain ASHA's median length)."""
    from accelerators.bohb import regret_at
    from experiments.harness.judge import table_truth
    from experiments.harness.replay_methods import _asha, _uniform_space, _v3_sampler, asha, asha_v3
    from igla_jax.evidence.prereg import UNIFORM_BPB
    placebo = _asha("placebo", lambda tab, pr: Placebo(_uniform_space(tab)))
    truth = table_truth(table)
    true = {c: float(b) for c, b in zip(truth.ids, truth.true_bpb)}
    none = UNIFORM_BPB - truth.best
    trs: dict[str, list] = {"asha": [], "bohb": [], "placebo": []}
    for r in range(seeds):
        trs["asha"].append(asha(table, r, 1, math.inf))
        trs["bohb"].append(asha_v3(table, r, 1, math.inf))
        trs["placebo"].append(placebo(table, r, 1, math.inf))
        if progress is not None:
            progress(r + 1, seeds)
    t_s = prereg.bohb_regret_at * float(np.median([t.sim_end_s for t in trs["asha"]]))
    return {"t_s": t_s, **{k: np.array([regret_at(t.completions, t_s, true, truth.best, none) for t in v])
                           for k, v in trs.items()}}


def power(reg: dict[str, Any], repeats: int, studies: int, prereg: Any, seed: int = 0) -> dict[str, Any]:
    """Enable rates of the study's test over `studies` resampled sets of `repeats` paired seeds."""
    from accelerators.bohb import bohb_verdict
    from experiments.studies.power import resampled_enable_rates
    on = resampled_enable_rates(reg, "asha", ("bohb", "placebo"), bohb_verdict, repeats, studies, prereg, seed)
    return {"studies": studies, "repeats": repeats, "seeds": len(reg["asha"]),
            "placebo_disabled": 1 - on["placebo"], "bohb_enabled": on["bohb"],
            "mean_regret": {k: float(np.mean(reg[k])) for k in ("asha", "bohb", "placebo")}}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m experiments.v3_power", description=__doc__.splitlines()[0],
                                 epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--table", type=Path, help="recorded curve table (its manifest beside it)")
    src.add_argument("--synthetic", type=int, metavar="SEED", help="experiments.harness.tables.tenth_table(SEED)")
    ap.add_argument("--structure", type=float, default=1.0, help="with --synthetic: how much the levers explain (0-1)")
    ap.add_argument("--seeds", type=int, default=300, help="race seeds replayed per arm (default 300)")
    ap.add_argument("--repeats", type=int, default=100, help="paired replays per simulated study (default 100, "
                                                              "as experiments.v3_study)")
    ap.add_argument("--studies", type=int, default=1000, help="simulated studies (default 1000)")
    ap.add_argument("--out", type=Path, default=None, help="JSON to write (default: print only)")
    a = ap.parse_args(argv)
    from igla_jax.curves.table import CurveError
    from igla_jax.evidence.prereg import load_prereg
    from igla_jax.execution.replay import load_table
    pr = load_prereg()
    try:
        if a.table is not None:
            table = load_table(a.table)
        else:
            from experiments.harness.tables import tenth_table
            table = tenth_table(a.synthetic, structure=a.structure)
    except (CurveError, ValueError, OSError) as e:
        print(f"v3_power: {e}", file=sys.stderr)
        return 2
    from experiments.studies.power import finish, progress_printer
    t0 = time.monotonic()
    reg = regrets(table, a.seeds, pr, progress_printer(3))
    res = power(reg, a.repeats, a.studies, pr)
    m = res["mean_regret"]
    return finish("v3_power", argv, table, res, a.out, t0, [
        f"{table.name}: T = {reg['t_s']:.1f} simulated s; mean regret at T: ASHA {m['asha']:.4f}, "
        f"BOHB {m['bohb']:.4f}, placebo {m['placebo']:.4f}",
        f"over {a.studies} studies of {a.repeats} paired replays (resampled from {a.seeds} seeds): the placebo is "
        f"disabled in {100 * res['placebo_disabled']:.1f} %, BOHB enabled in {100 * res['bohb_enabled']:.1f} % "
        f"(the falsifier's power here)"], t_s=reg["t_s"])

if __name__ == "__main__":
    sys.exit(main())
