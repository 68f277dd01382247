"""V5 falsifier power by simulation: races through the real race state machine and PhiSampler.

    python -m experiments.phi_power [--races 1000] [--sizes 41 54 68 88 108] [--whole] [--seed 0]
        [--json assertions/phi_power.json]

No training: every trial's first-rung BPB is resampled (with replacement) from the measured rung
BPBs of assertions/zero_cost_study.csv (51 configs at quick rung 2; nan = diverged, worst), later
rungs improve it by a fixed 0.1 per rung (ASHA only needs an order). Two worlds:
- useless grid: phi-grid and full-grid configs draw from the same pool (the phi claim is false);
  goal: V5 disabled in >= 80 % of races;
- good grid: phi-grid configs draw from the best quarter of the pool (its ceil(n / 4) lowest
  values), full-grid configs from the whole pool (so a full-grid config is still in the best
  quarter 25 % of the time); goal: V5 wrongly disabled in <= 5 % of races.
Races: quick (rungs 100/300/900, quick space) and full (pre-registered rungs, full space) at their
preset sizes, and the quick race at every --sizes max_trials. Prints a table; --json writes it all.
Each race is stopped once V5 is decided (the decision is sticky); --whole runs races to the end.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import shlex
import sys
import time
from pathlib import Path

import numpy as np
from scipy.stats import binomtest

from accelerators.phi_grid import PhiSampler, judge_size, on_phi_grid
from igla_jax.evidence.prereg import Prereg, load_prereg, repo_root
from igla_jax.execution.presets import PRESETS
from igla_jax.search.race import BudgetExhausted, Race, RaceConfig, RungDone, Start, Train
from igla_jax.search.search_space import SearchSpace

GOOD_QUANTILE = 0.25


def load_pool(path: Path) -> np.ndarray:
    """The study's rung BPBs (nan = diverged); raises ValueError naming the file."""
    try:
        with path.open() as f:
            rows = list(csv.DictReader(line for line in f if not line.startswith("#")))
        pool = np.array([float(r["bpb"]) for r in rows])
    except (OSError, KeyError, ValueError) as e:
        raise ValueError(f"{path}: cannot read the bpb column ({type(e).__name__}: {e})") from None
    if pool.size == 0:
        raise ValueError(f"{path}: no rows")
    return pool


def simulate(race: Race, space: SearchSpace, pool: np.ndarray, world: str, rng: np.random.Generator, *,
             whole: bool = False):
    """One race with a synthetic executor; returns the final sampler state.

    Unless `whole`, the race is stopped (BudgetExhausted, as a --budget stop does) once V5 is decided:
    the decision is sticky, so nothing later can change it.
    """
    best = np.sort(np.where(np.isnan(pool), np.inf, pool))[:math.ceil(GOOD_QUANTILE * pool.size)]
    first: dict[str, float] = {}
    state, acts = race.step(race.init(), Start())
    queue = list(acts)
    while queue:
        a = queue.pop(0)
        if not isinstance(a, Train):  # no Confirm/Reproduce (confirm=False); Finish ends the queue
            continue
        if a.trial_id not in first:
            src = best if world == "good" and on_phi_grid(a.config, space) else pool
            first[a.trial_id] = float(src[rng.integers(src.size)])
        b = first[a.trial_id] - 0.1 * a.rung
        ok = math.isfinite(b)
        state, new = race.step(state, RungDone(a.action_id, a.trial_id, a.rung, a.to_step, b if ok else math.nan,
                                               1.0, "ok" if ok else "diverged"))
        queue.extend(new)
        if not whole and state.sampler_state.decision is not None:
            state, _ = race.step(state, BudgetExhausted())
            break
    return state.sampler_state


def power(name: str, rungs: tuple, space: SearchSpace, max_trials: int, prereg: Prereg, pool: np.ndarray,
          races: int, seed: int, whole: bool = False) -> dict:
    """Disable rates of V5 in both worlds over `races` races of one shape."""
    row = {"race": name, "rungs": list(rungs), "max_trials": max_trials, "judge_n": judge_size(prereg, max_trials)}
    for w, world in enumerate(("useless", "good")):
        disabled = pending = 0
        for r in range(races):
            rc = RaceConfig(rungs=rungs, eta=prereg.eta, seed=seed * 100_003 + r, max_trials=max_trials,
                            victory_seeds=tuple(prereg.seeds), reproduce_tol=prereg.reproduce_tol, confirm=False)
            st = simulate(Race(rc, sampler=PhiSampler(prereg, space=space)), space, pool, world,
                          np.random.default_rng([seed, w, max_trials, r]), whole=whole)
            disabled += st.disabled
            pending += st.decision is None
        ci = binomtest(disabled, races).proportion_ci(0.95)
        key = "useless_disabled" if world == "useless" else "good_wrongly_disabled"
        row[key] = disabled / races
        row[key + "_ci95"] = [round(ci.low, 4), round(ci.high, 4)]
        row[f"{world}_undecided"] = pending
    row["goals_met"] = (row["useless_disabled"] >= prereg.phi_useless_disabled_min
                        and row["good_wrongly_disabled"] <= prereg.phi_good_disabled_max)
    return row


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m experiments.phi_power", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--races", type=int, default=1000, help="races per world and race shape (default 1000)")
    ap.add_argument("--sizes", type=int, nargs="*", default=[41, 54, 68, 88, 108],
                    help="extra max_trials for the quick-shaped race (default 41 54 68 88 108)")
    ap.add_argument("--whole", action="store_true",
                    help="run every race to its end (slower) instead of stopping it once V5 is decided")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, help="write the results here (e.g. assertions/phi_power.json)")
    a = ap.parse_args(argv)
    if a.races < 1 or any(s < 2 for s in a.sizes):
        ap.error(f"--races must be >= 1 and every --sizes >= 2, got --races {a.races} --sizes {a.sizes}")
    return a


def main(argv: list[str] | None = None) -> int:
    a = parse(argv)
    t0 = time.monotonic()
    prereg = load_prereg()
    src = repo_root() / "assertions" / "zero_cost_study.csv"
    try:
        pool = load_pool(src)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    quick, full = PRESETS["quick"], PRESETS["full"]
    shapes = [("quick", quick.rungs, quick.space, quick.max_trials),
              ("full", tuple(prereg.rungs), full.space, prereg.eta ** len(prereg.rungs))]
    shapes += [(f"quick@{n}", quick.rungs, quick.space, n) for n in a.sizes if n != quick.max_trials]
    rows = []
    print(f"{'race':11s} {'trials':>6s} {'judged':>6s} {'useless disabled':>17s} {'good wrongly disabled':>22s}  goals")
    for name, rungs, space, n in shapes:
        r = power(name, tuple(rungs), space, n, prereg, pool, a.races, a.seed, a.whole)
        rows.append(r)
        print(f"{name:11s} {n:6d} {r['judge_n']:6d} {r['useless_disabled']:16.1%} {r['good_wrongly_disabled']:21.1%}"
              f"   {'met' if r['goals_met'] else 'NOT met'}", flush=True)
    # with one worker the decision depends on max_trials only (the first judge_n trials' arms and draws)
    smallest = min((r["max_trials"] for r in rows if r["goals_met"]), default=None)
    print(f"smallest race run that meets both goals: {smallest or 'none of those run'} trials "
          f"({time.monotonic() - t0:.0f} s)")
    if a.json is not None:
        out = {"command": "python -m experiments.phi_power " + " ".join(shlex.quote(x) for x in
                                                                        (sys.argv[1:] if argv is None else argv)),
               "prereg_version": prereg.version, "alpha_per_arm": prereg.alpha_per_arm,
               "phi_explore_share": prereg.phi_explore_share, "phi_judge_fraction": prereg.phi_judge_fraction,
               "pool": {"source": "assertions/zero_cost_study.csv (column bpb)", "n": int(pool.size),
                        "diverged": int(np.isnan(pool).sum())},
               "worlds": {"useless": "phi-grid and full-grid first-rung BPB resampled from the same pool",
                          "good": f"phi-grid first-rung BPB resampled from the best {GOOD_QUANTILE:.0%} of the pool, "
                                  "full-grid from the whole pool"},
               "goals": {"useless_disabled": prereg.phi_useless_disabled_min,
                         "good_wrongly_disabled": prereg.phi_good_disabled_max}, "races": a.races, "seed": a.seed, "whole_races": a.whole, "results": rows,
               "smallest_max_trials_meeting_goals": smallest,
               "note": "one worker: the decision depends on max_trials only (the first judge_n trials), not on "
                       "the rungs or the space; quick@81 would repeat the full row draw for draw"}
        a.json.write_text(json.dumps(out, indent=1) + "\n")
        print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
