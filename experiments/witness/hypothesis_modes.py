"""Witness modes H(1) and H(2): the harness's judge fed trajectories that break each condition, and their twins."""
from __future__ import annotations

from typing import Any

import numpy as np

import experiments.harness.judge as judge
from experiments.harness.trajectory import Trajectory
from experiments.witness.cases import Case, Context, _configs


def _harness_rows(ctx: Context, first_ratio: float, bad_promotions: int) -> dict[str, Any]:
    """The harness's evaluate on a 20-config truth: the uniform grid and asha+v5, 3 repeats at 1 worker."""
    ids = [c.config_id for c in _configs(20)]
    true = np.array([ctx.prereg.mu0 - 0.01 * (20 - i) for i in range(20)])
    truth = judge.Truth(tuple(ids), ("uniform",) * 20, true, {c: i for i, c in enumerate(ids)})
    n_top = int(judge.top_set(true, ctx.prereg.cheap_promotion_top_fraction).sum())
    cheap = tuple(ids[-1 - j] for j in range(bad_promotions)) + tuple(ids[j % n_top] for j in range(10 - bad_promotions))
    grid_first = 1000.0
    trajs = {}
    for m, first, promo in (("uniform_grid", grid_first, ()), ("asha+v5", first_ratio * grid_first, cheap)):
        trajs[(m, 1)] = [Trajectory(m, r, 1, ((500.0, ids[0], float(true[0])),), first, promo, 2000.0)
                         for r in range(3)]
    rows = judge.evaluate(trajs, truth, 1e4, ctx.judge_prereg, kinds={"uniform_grid": "baseline", "asha+v5": "ours"},
                            draws=200)
    return next(r for r in rows if r["method"] == "asha+v5")


def h1_first_promotion(ctx: Context) -> tuple[Case, Case]:
    mx = ctx.prereg.harness_first_promotion_ratio_max

    def judge(ratio: float) -> Case:
        h1 = _harness_rows(ctx, ratio, 0)["h1"]
        return Case(f"asha+v5 first promotion at {ratio:g} x the uniform grid's", h1["holds"] is False,
                    h1["max"] == ctx.judge_prereg.harness_first_promotion_ratio_max,
                    f"h1 holds={h1['holds']}: ratio_to_grid {h1['ratio_to_grid']} vs max {h1['max']}")
    return judge((1 + mx) / 2), judge(mx / 2)


def h2_cheap_promotions(ctx: Context) -> tuple[Case, Case]:
    k = next(j for j in range(11) if j / 10 > ctx.prereg.cheap_promotion_fail_max)  # fewest failures that break H(2)

    def judge(bad: int) -> Case:
        h2 = _harness_rows(ctx, 0.1, bad)["h2"]
        return Case(f"10 cheap promotions per repeat, {bad} outside the top set", h2["falsified"] is True,
                    h2["max"] == ctx.judge_prereg.cheap_promotion_fail_max,
                    f"h2 falsified={h2['falsified']}: {h2['outside_top']}/{h2['promoted']} outside top vs max {h2['max']}")
    return judge(k), judge(k - 1)
