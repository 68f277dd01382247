"""How often V6's falsifier catches a useless allocator, and how often it lets UCB1 through (its power).

Replays N race seeds of round robin (from each start family; uniform allocation = the best phase,
as in the study), of UCB1 and of a *placebo* allocator (each family drawn uniformly at random: no
better than uniform allocation), once each, on one table, then draws
--studies study-sized subsets of paired seeds (the study's --repeats, with replacement) and applies
the study's test (`accelerators.ucb.ucb_verdict`, last-window regret) to each:

- placebo: the share of studies that disable it (should be about 1 - alpha / 7);
- UCB1: the share that enable it (the power on this table).

    python -m experiments.v6_power --table assertions/curves_tenth.jsonl [--seeds 300] [--repeats 100]
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from igla_jax.search.interfaces import Allocation


@dataclasses.dataclass(frozen=True)
class PlaceboAllocator:
    """A useless 'accelerator': each start's family drawn uniformly at random (seeded by the race seed)."""
    name: str = "placebo"

    def init(self, families: tuple[str, ...]) -> int:
        return 0

    def next_family(self, state: int, race: Any, available: tuple[str, ...]) -> Allocation:
        rng = np.random.default_rng([int(race.config.seed), int(state), 0x6A])
        return Allocation(state + 1, available[int(rng.integers(len(available)))])

    def credit(self, state: int, family: str) -> int:
        return state


def regrets(table: Any, seeds: int, prereg: Any, progress: Any = None) -> dict[str, np.ndarray]:
    """Per seed: UCB1's, the placebo's and uniform allocation's regret (the best round-robin phase, as the study)."""
    from accelerators.ucb import UCB1Allocator
    from experiments.studies.v6_study import STUDY_VERDICT, RoundRobinFrom, replay_regret, table_values
    values = table_values(table, prereg)
    arms = {"ucb1": UCB1Allocator.from_prereg(prereg, STUDY_VERDICT), "placebo": PlaceboAllocator(),
            **{f"phase{k}": RoundRobinFrom(k) for k in range(len(values))}}
    out: dict[str, list[float]] = {k: [] for k in arms}
    for r in range(seeds):
        for k, a in arms.items():
            out[k].append(replay_regret(table, a, r, prereg, values))
        if progress is not None:
            progress(r + 1, seeds)
    res = {k: np.array(v) for k, v in out.items()}
    res["round_robin"] = np.min(np.stack([res[f"phase{k}"] for k in range(len(values))]), axis=0)
    return res


def power(reg: dict[str, np.ndarray], repeats: int, studies: int, prereg: Any, seed: int = 0) -> dict[str, Any]:
    """Enable rates of the study's test over `studies` resampled sets of `repeats` paired seeds."""
    from accelerators.ucb import ucb_verdict
    from experiments.studies.power import resampled_enable_rates
    on = resampled_enable_rates(reg, "round_robin", ("ucb1", "placebo"), ucb_verdict, repeats, studies, prereg, seed)
    return {"studies": studies, "repeats": repeats, "seeds": len(reg["round_robin"]),
            "placebo_disabled": 1 - on["placebo"], "ucb1_enabled": on["ucb1"],
            "mean_regret": {k: float(np.mean(reg[k])) for k in ("round_robin", "ucb1", "placebo")}}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m experiments.v6_power", description=__doc__.splitlines()[0],
                                 epilog=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--table", type=Path, required=True, help="recorded curve table (its manifest beside it)")
    ap.add_argument("--seeds", type=int, default=300, help="race seeds replayed per arm (default 300)")
    ap.add_argument("--repeats", type=int, default=100, help="paired replays per simulated study (default 100)")
    ap.add_argument("--studies", type=int, default=1000, help="simulated studies (default 1000)")
    ap.add_argument("--out", type=Path, default=None, help="JSON to write (default: print only)")
    a = ap.parse_args(argv)
    from igla_jax.curves.table import CurveError
    from igla_jax.evidence.prereg import load_prereg
    from igla_jax.execution.replay import load_table
    pr = load_prereg()
    try:
        table = load_table(a.table)
    except (CurveError, ValueError, OSError) as e:
        print(f"v6_power: {e}", file=sys.stderr)
        return 2
    from experiments.studies.power import finish, progress_printer
    t0 = time.monotonic()
    reg = regrets(table, a.seeds, pr, progress_printer(3))
    res = power(reg, a.repeats, a.studies, pr)
    m = res["mean_regret"]
    return finish("v6_power", argv, table, res, a.out, t0, [
        f"{table.name}: mean last-window regret: round robin {m['round_robin']:.4f}, UCB1 {m['ucb1']:.4f}, "
        f"placebo {m['placebo']:.4f}",
        f"over {a.studies} studies of {a.repeats} paired replays (resampled from {a.seeds} seeds): the placebo is "
        f"disabled in {100 * res['placebo_disabled']:.1f} %, UCB1 enabled in {100 * res['ucb1_enabled']:.1f} % "
        f"(the falsifier's power here)"])

if __name__ == "__main__":
    sys.exit(main())
