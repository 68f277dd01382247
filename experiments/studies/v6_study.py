"""V6 study (seed mode 6): replay races with UCB1 and with round robin, compare their regrets, write the verdict.

Each repeat r replays the table's preset with race seed r once with UCB1 (with an enabled verdict,
so the study judges UCB1 itself) and once with round robin from each start family, in memory, one
worker, default random sampler over the uniform stratum; uniform allocation's regret in repeat r is
the best of round robin's phases (pre-registration v6: the window regret depends on the order of
families, and with one phase a placebo that only reorders families passed in every study,
`python -m experiments.v6_power`). Regret (`accelerators.ucb.regret`): mean over the
last ucb_regret_windows complete windows of the chosen families' value gap, a family's value being
the mean true top-rung BPB of its uniform-stratum configs on the table's primary seed.

    python -m experiments.v6_study --table TABLE [--repeats 100] [--out assertions/v6_verdict.json]
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from typing import Sequence

import numpy as np

from accelerators.ucb import (UCB1Allocator, V6Error, default_verdict_path, family_values, regret, ucb_verdict,
                              write_v6_verdict)
from igla_jax.curves.table import CurveError
from igla_jax.evidence.ledger_row import CodeVersion
from igla_jax.evidence.prereg import UNIFORM_BPB, Prereg, load_prereg
from igla_jax.evidence.verdict import Verdict
from igla_jax.execution.race_runner import run_replay
from igla_jax.execution.replay import ReplayTable, load_table, table_space
from igla_jax.search.interfaces import Allocation, RoundRobin

VERSION = CodeVersion("0" * 40, False)   # in-memory rows, thrown away: no git call per race
STUDY_VERDICT = Verdict(True, math.nan, math.nan, "V6 study: UCB1 replayed as such, to be judged")


@dataclasses.dataclass(frozen=True)
class V6Study:
    """Both regret series (paired by repeat), the family values they were measured against, and the verdict."""
    ucb_regrets: tuple[float, ...]
    uniform_regrets: tuple[float, ...]
    values: dict[str, float]
    verdict: Verdict
    ucb_step_share: dict[str, float] = dataclasses.field(default_factory=dict)      # mean share of training steps
    uniform_step_share: dict[str, float] = dataclasses.field(default_factory=dict)  # per family, per allocator
    phase_mean_regrets: tuple[float, ...] = ()   # round robin's mean regret from each start family


def table_values(table: ReplayTable, prereg: Prereg) -> dict[str, float]:
    """Each family's value: mean top-rung BPB (primary seed) of its uniform-stratum configs, diverged = UNIFORM_BPB (8.0)."""
    top = table.rungs[-1]
    sp = table_space(table, strata=("uniform",))
    tops = {}
    for fam, cfgs in sp.by_family:
        r = [table.run(c, table.primary_seed) for c in cfgs]
        tops[fam] = [x.val_bpb[x.index(top, table.name)] for x in r]
    return family_values(tops, UNIFORM_BPB)


def replay_race(table: ReplayTable, allocator: object, seed: int, prereg: Prereg, values: dict[str, float],
                budget_s: float | None = None) -> tuple[float, dict[str, float]]:
    """One replayed race with the given allocator (race seed = `seed`): its regret and the share of
    the race's training steps each family received.

    budget_s: an anytime race of that simulated size (prereg v11); None: the preset's 81-trial race. The regret
    is over the windows of the first eta^len(rungs) starts either way (v11: later starts of an anytime race
    that uses up the table are forced by which families have configs left)."""
    o = run_replay(seed=int(seed), preset=table.preset, table=table, workers=1, prereg=prereg,
                   allocator=allocator, version=VERSION, budget_s=budget_s)
    chosen = [t.config.family for t in o.state.trials][:prereg.eta ** len(table.rungs)]
    steps = {f: 0.0 for f in values}
    for t in o.state.trials:
        steps[t.config.family] = steps.get(t.config.family, 0.0) + (t.results[-1].step if t.results else 0)
    total = sum(steps.values()) or 1.0
    share = {f: v / total for f, v in steps.items()}
    return regret(chosen, values, window_trials=prereg.ucb_window_trials, windows=prereg.ucb_regret_windows), share


def replay_regret(table: ReplayTable, allocator: object, seed: int, prereg: Prereg, values: dict[str, float]) -> float:
    """One replayed race's regret with the given allocator (race seed = `seed`)."""
    return replay_race(table, allocator, seed, prereg, values)[0]


def run_study(table: ReplayTable, repeats: int, prereg: Prereg | None = None) -> V6Study:
    """Replays `repeats` races per allocator and judges V6 (`accelerators.ucb.ucb_verdict`)."""
    pr = prereg if prereg is not None else load_prereg()
    if repeats < 2:
        raise V6Error(f"--repeats {repeats}: the paired test needs at least 2")
    from experiments.harness.judge import budget_s, table_truth
    values = table_values(table, pr)
    budget = budget_s(table, table_truth(table))   # the anytime race (prereg v10, v11)
    ucb = UCB1Allocator.from_prereg(pr, STUDY_VERDICT)
    ur = [replay_race(table, ucb, r, pr, values, budget) for r in range(repeats)]
    # uniform allocation = the best of round robin's phases (start family), per replay (prereg v6): the
    # window regret depends on the order of families, so one phase alone lets an order effect pass as skill
    phases = [[replay_race(table, RoundRobinFrom(k), r, pr, values, budget) for r in range(repeats)]
              for k in range(len(table_space(table, strata=("uniform",)).by_family))]
    best = [min(range(len(phases)), key=lambda k: (phases[k][r][0], k)) for r in range(repeats)]
    rr = [phases[best[r]][r] for r in range(repeats)]
    u, g = tuple(x[0] for x in ur), tuple(x[0] for x in rr)
    mean_share = lambda runs: {f: sum(x[1][f] for x in runs) / len(runs) for f in values}  # noqa: E731
    phase_means = tuple(float(np.mean([x[0] for x in ph])) for ph in phases)
    return V6Study(u, g, values, ucb_verdict(u, g, pr), mean_share(ur), mean_share(rr), phase_means)


@dataclasses.dataclass(frozen=True)
class RoundRobinFrom:
    """Round robin starting from the k-th family (k = 0 is `RoundRobin`)."""
    start: int = 0
    name: str = "round_robin"

    def init(self, families: tuple[str, ...]) -> int:
        return self.start

    def next_family(self, state: int, race: object, available: tuple[str, ...]) -> Allocation:
        return RoundRobin().next_family(state, race, available)

    def credit(self, state: int, family: str) -> int:
        return state


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m experiments.v6_study", description=__doc__.splitlines()[0])
    ap.add_argument("--table", required=True, help="recorded curve table (its manifest beside it)")
    ap.add_argument("--repeats", type=int, default=100, help="paired replays per allocator (race seeds 0..n-1)")
    ap.add_argument("--out", default=str(default_verdict_path()), help="verdict file to write")
    a = ap.parse_args(argv)
    pr = load_prereg()
    try:
        table = load_table(a.table)
        s = run_study(table, a.repeats, pr)
    except (CurveError, V6Error) as e:
        print(f"v6_study: {e}", file=sys.stderr)
        return 2
    p = write_v6_verdict(a.out, s.verdict, table=table.name, table_sha256=table.sha256, prereg=pr,
                         ucb_regrets=s.ucb_regrets, uniform_regrets=s.uniform_regrets, repeats=a.repeats,
                         family_values=s.values, ucb_step_share=s.ucb_step_share,
                         uniform_step_share=s.uniform_step_share, round_robin_phase_mean_regrets=list(s.phase_mean_regrets),
                         command="python -m experiments.v6_study " + " ".join(sys.argv[1:] if argv is None else argv))
    print("family values (mean top-rung BPB of the uniform stratum): "
          + ", ".join(f"{k} {v:.4f}" for k, v in s.values.items()) + f"; the table favours {min(s.values, key=s.values.get)}")
    print("share of training steps per family (mean over replays): "
          + "; ".join(f"{f} UCB1 {100 * s.ucb_step_share[f]:.1f} % vs round robin {100 * s.uniform_step_share[f]:.1f} %"
                      for f in s.values))
    print(f"V6 {s.verdict.line()}\nwritten {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
