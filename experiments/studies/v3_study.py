"""V3 study (seed mode 3): replay races with BOHB and with plain ASHA, compare their regrets at T, write the verdict.

Each repeat r replays the table's preset with race seed r twice (in memory, --workers simulated
workers), as anytime races sized by the table's harness budget (prereg v10; every uniform config
straight to the top rung, `experiments.harness.judge.budget_s`): plain ASHA (uniform sampling over
the table's uniform stratum) and ASHA+V3 (BOHB over the same stratum, switched on so that the study
judges BOHB itself, no warm start). T is fixed by the pre-registration before any result:
prereg.bohb_regret_at_budget x that budget (v10; before it, bohb_regret_at x plain ASHA's median
length of the 81-trial race). A replay's regret at T is the true top-rung BPB (mean over the table's
seeds) of its incumbent at T minus the table's best (experiments.harness definitions; no
incumbent yet = bpb_band high minus the best). V3 is enabled iff a one-sided Wilcoxon signed-rank
test finds BOHB's regret lower, paired by repeat, at alpha / bonferroni_n.

    python -m experiments.v3_study --table assertions/curves_tenth.jsonl [--repeats 100] [--workers 1]
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from typing import Any, Sequence

import numpy as np

from accelerators.bohb import V3Error, bohb_verdict, default_verdict_path, regret_at, write_v3_verdict
from igla_jax.curves.table import CurveError
from igla_jax.evidence.prereg import UNIFORM_BPB, Prereg, load_prereg
from igla_jax.evidence.verdict import Verdict
from igla_jax.execution.replay import ReplayTable, load_table


@dataclasses.dataclass(frozen=True)
class V3Study:
    t_s: float                      # the pre-registered time point T (simulated seconds)
    budget_s: float                 # the anytime races' budget (the table's harness budget)
    asha_end_s: tuple[float, ...]   # plain ASHA's simulated race lengths
    bohb_regrets: tuple[float, ...]
    asha_regrets: tuple[float, ...]
    verdict: Verdict
    wall_s: float


def run_study(table: ReplayTable, repeats: int, prereg: Prereg | None = None, *, workers: int = 1,
              progress: Any = None) -> V3Study:
    from experiments.harness.judge import budget_s, table_truth
    from experiments.harness.replay_methods import asha, asha_v3
    pr = prereg if prereg is not None else load_prereg()
    if repeats < 2:
        raise V3Error(f"--repeats {repeats}: the paired test needs at least 2")
    t0 = time.monotonic()
    truth = table_truth(table)
    true = {c: float(b) for c, b in zip(truth.ids, truth.true_bpb)}
    none = UNIFORM_BPB - truth.best   # no incumbent yet: a uniform model (prereg note of bohb_regret_at)
    budget = budget_s(table, truth)
    a_tr, b_tr = [], []
    for r in range(repeats):
        a_tr.append(asha(table, r, workers, budget))
        b_tr.append(asha_v3(table, r, workers, budget))
        if progress is not None:
            progress(r + 1, repeats)
    ends = tuple(float(t.sim_end_s) for t in a_tr)
    t_s = pr.bohb_regret_at_budget * budget
    ar = tuple(regret_at(t.completions, t_s, true, truth.best, none) for t in a_tr)
    br = tuple(regret_at(t.completions, t_s, true, truth.best, none) for t in b_tr)
    return V3Study(t_s, budget, ends, br, ar, bohb_verdict(br, ar, pr), time.monotonic() - t0)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m experiments.v3_study", description=__doc__.splitlines()[0],
                                 epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--table", required=True, help="recorded curve table (its manifest beside it)")
    ap.add_argument("--repeats", type=int, default=100, help="paired replays per method (race seeds 0..n-1; default 100)")
    ap.add_argument("--workers", type=int, default=1, help="simulated workers per replay (default 1)")
    ap.add_argument("--out", default=str(default_verdict_path()), help="verdict file to write "
                                                                        "(default assertions/v3_verdict.json)")
    a = ap.parse_args(argv)
    pr = load_prereg()

    def progress(i: int, n: int) -> None:
        if i == n or i % max(1, n // 10) == 0:
            print(f"  replayed {i}/{n} repeat pairs", file=sys.stderr, flush=True)
    try:
        table = load_table(a.table)
        s = run_study(table, a.repeats, pr, workers=a.workers, progress=progress)
    except (CurveError, V3Error) as e:
        print(f"v3_study: {e}", file=sys.stderr)
        return 2
    p = write_v3_verdict(a.out, s.verdict, table=table.name, table_sha256=table.sha256, prereg=pr,
                         repeats=a.repeats, workers=a.workers, t_s=s.t_s, budget_s=s.budget_s,
                         asha_median_end_s=float(np.median(s.asha_end_s)),
                         bohb_regrets=list(s.bohb_regrets), asha_regrets=list(s.asha_regrets),
                         command="python -m experiments.v3_study " + " ".join(sys.argv[1:] if argv is None else argv))
    wins = sum(b < x for b, x in zip(s.bohb_regrets, s.asha_regrets))
    ties = sum(b == x for b, x in zip(s.bohb_regrets, s.asha_regrets))
    print(f"T = {s.t_s:.1f} simulated s ({pr.bohb_regret_at_budget} x the anytime races' budget {s.budget_s:.1f} s; "
          f"plain ASHA's median race length {np.median(s.asha_end_s):.1f} s)")
    print(f"regret at T: ASHA+V3 mean {np.mean(s.bohb_regrets):.4f} median {np.median(s.bohb_regrets):.4f}; "
          f"ASHA mean {np.mean(s.asha_regrets):.4f} median {np.median(s.asha_regrets):.4f}; "
          f"V3 lower in {wins}, tied in {ties} of {a.repeats}")
    print(f"V3 {s.verdict.line()}\nwritten {p} ({s.wall_s:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
