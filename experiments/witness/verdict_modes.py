"""Witness modes V1-V7: each accelerator's verdict fed a violating study and its clean twin."""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

import accelerators.mup_transfer as mup_transfer
import accelerators.phi_grid as phi_grid
import accelerators.ucb as ucb
import accelerators.zero_cost as zero_cost
import coord_check.core as coord_core
from experiments.witness.cases import Case, Context, _configs
from igla_jax.search.race_types import RungResult, Trial
from igla_jax.search.search_space import DEFAULT_SPACE


def _verdict_case(inp: str, v: Any, threshold: float, marker: str) -> Case:
    return Case(inp, not v.enabled, marker in v.reason and v.threshold == threshold, v.line())


def _coord_check(slope: float) -> Any:
    """A fitted coord check at widths 8 and 32: every layer flat except `logits`, whose slope is `slope`."""
    cfg = coord_core.CoordCheckConfig(families=("attn",), widths=(8, 32), steps=2, seeds=2)
    w = np.asarray(cfg.widths, float)
    flat = np.full((cfg.seeds, len(w), cfg.steps), 0.5)
    tilted = 0.3 * np.broadcast_to((w / w[0])[None, :, None] ** slope, flat.shape)
    return coord_core.fit_result(cfg, {"attn": {"block1/mlp": flat, "logits": np.array(tilted)}})


def v1_mup(ctx: Context) -> tuple[Case, Case]:
    b = ctx.prereg.mup_slope_max
    judge = lambda s: mup_transfer.mup_verdict(_coord_check(s), ctx.judge_prereg)  # noqa: E731
    return (_verdict_case(f"coord check w8/w32, logits slope {2 * b:+g}", judge(2 * b), ctx.judge_prereg.mup_slope_max, "|slope| >="),
            _verdict_case(f"same, logits slope {b / 2:+g}", judge(b / 2), ctx.judge_prereg.mup_slope_max, "|slope| >="))


def _study(bpb_of_rank: Callable[[int, int], float], n: int = 24) -> list[zero_cost.StudyRow]:
    """n study rows; config i has the i-th highest proxy scores (synflow and grad_norm agree),
    parameter count uninformative (a fixed permutation)."""
    perm = np.random.default_rng(14).permutation(n)
    return [zero_cost.StudyRow(c, float(n - i), float(n - i) / 10, float(1000 + perm[i]), bpb_of_rank(i, n))
            for i, c in enumerate(_configs(n))]


def v2_zero_cost(ctx: Context) -> tuple[Case, Case]:
    base = ctx.prereg.mu0
    good = lambda i, n: base - 0.01 * (n - i)  # noqa: E731  higher score, lower BPB
    flat_top = lambda i, n: base if i < n // 3 else good(i, n)  # noqa: E731  the top third stay at baseline
    judge = lambda rows: zero_cost.proxy_verdict(rows, ctx.judge_prereg)  # noqa: E731
    t = ctx.judge_prereg.proxy_rho_min
    return (_verdict_case(f"24 study rows, top-ranked 8 at baseline BPB {base}", judge(_study(flat_top)), t, "V2 is off"),
            _verdict_case("same, top-ranked 8 at the lowest BPBs", judge(_study(good)), t, "V2 is off"))


def _phi_trials(ctx: Context, phi_offset: float) -> list[Trial]:
    """The race's first judge_size trials, alternating phi-grid and full-grid configs, with first-rung BPBs."""
    need = phi_grid.judge_size(ctx.prereg, ctx.prereg.eta ** len(ctx.prereg.rungs))
    phi = phi_grid.phi_grid("attn")
    full = [c for c in (DEFAULT_SPACE.config_at("attn", 41 * i % DEFAULT_SPACE.size("attn")) for i in range(4 * need))
            if not phi_grid.on_phi_grid(c)]
    out = []
    for i in range(need):
        on, k = i % 2 == 0, i // 2
        cfg, bpb = (phi[k], ctx.prereg.mu0 + 0.01 * k + phi_offset) if on else (full[k], ctx.prereg.mu0 + 0.01 * k)
        out.append(Trial(f"t{i:04d}", cfg, 0, "done", (RungResult(0, ctx.prereg.rungs[0], bpb, 1.0),)))
    return out


def v5_phi(ctx: Context) -> tuple[Case, Case]:
    need = phi_grid.judge_size(ctx.prereg, ctx.prereg.eta ** len(ctx.prereg.rungs))

    def judge(offset: float, inp: str) -> Case:
        arms = phi_grid.race_arms(_phi_trials(ctx, offset), need, DEFAULT_SPACE)
        return _verdict_case(inp, phi_grid.phi_verdict(*arms, ctx.judge_prereg), ctx.judge_prereg.alpha_per_arm,
                             "V5 disabled")
    return (judge(0.005, f"{need} trials at the judge point, phi arm interleaved with the full-grid arm"),
            judge(-1.0, "same, phi arm 1.0 BPB lower"))


def v6_ucb(ctx: Context) -> tuple[Case, Case]:
    """Paired last-10-window regrets of 12 replays: UCB1 above round robin (violating) or clearly below (twin)."""
    uniform = [0.20 + 0.01 * k for k in range(12)]

    def judge(delta: float, inp: str) -> Case:
        v = ucb.ucb_verdict([u + delta + 0.001 * k for k, u in enumerate(uniform)], uniform, ctx.judge_prereg)
        return _verdict_case(inp, v, ctx.judge_prereg.alpha_per_arm, "V6 disabled")
    return (judge(+0.02, "12 paired replays, UCB1 regret over the last 10 windows above round robin's"),
            judge(-0.10, "same, UCB1 regret 0.1 below round robin's in every replay"))


def v3_bohb(ctx: Context) -> tuple[Case, Case]:
    """Paired regrets at T of 12 replays: BOHB above plain ASHA (violating) or clearly below (twin)."""
    from accelerators import bohb
    asha = [0.10 + 0.01 * k for k in range(12)]

    def judge(delta: float, inp: str) -> Case:
        v = bohb.bohb_verdict([a + delta + 0.001 * k for k, a in enumerate(asha)], asha, ctx.judge_prereg)
        return _verdict_case(inp, v, ctx.judge_prereg.alpha_per_arm, "V3 disabled")
    return (judge(+0.02, "12 paired replays, BOHB regret at the pre-registered T above plain ASHA's"),
            judge(-0.05, "same, BOHB regret 0.05 below plain ASHA's in every replay"))


def v4_surrogate(ctx: Context) -> tuple[Case, Case]:
    """A surrogate whose held-out MAE is surrogate_mae_max + 0.05 (violating), and one inside it that prunes no winner."""
    from accelerators import surrogate
    pr = ctx.judge_prereg
    bad = surrogate.surrogate_verdict({0: 0.08, 1: pr.surrogate_mae_max + 0.05, 2: 0.06}, 100, 2, pr)
    good = surrogate.surrogate_verdict({0: 0.08, 1: pr.surrogate_mae_max - 0.05, 2: 0.04}, 100, 2, pr)
    return (_verdict_case(f"held-out MAE at rung 2 = {pr.surrogate_mae_max + 0.05:g} (> surrogate_mae_max), "
                          "2 of 100 prunes in the top set", bad, pr.surrogate_mae_max, "V4 disabled"),
            _verdict_case(f"same, held-out MAE at rung 2 = {pr.surrogate_mae_max - 0.05:g}", good,
                          pr.surrogate_mae_max, "V4 disabled"))


def _curriculum_study(var_ratio: float, gain: float) -> Any:
    """3 configs x 8 seeds: the curriculum's across-seed variance var_ratio x the baseline's, BPB lower by gain."""
    from accelerators.curriculum import CurriculumStudy
    z = [(-1.0) ** k for k in range(8)]
    base = [tuple(2.6 + 0.1 * c + 0.02 * x for x in z) for c in range(3)]
    cur = [tuple(2.6 + 0.1 * c - gain + 0.02 * math.sqrt(var_ratio) * x for x in z) for c in range(3)]
    wall = [tuple(b - gain - 0.001 * k for k, b in enumerate(row)) for row in base]
    return CurriculumStudy(("c0", "c1", "c2"), tuple(base), tuple(cur), tuple(base), tuple(wall))


def v7_curriculum(ctx: Context) -> tuple[Case, Case]:
    from accelerators import curriculum
    pr = ctx.judge_prereg
    bad = curriculum.curriculum_verdict(_curriculum_study(1.6, 0.05), pr)
    good = curriculum.curriculum_verdict(_curriculum_study(1.0, 0.05), pr)
    return (_verdict_case("3 configs x 8 seeds, curriculum seed variance +60 % (limit +50 %), 0.05 BPB better at "
                          "matched wall-clock", bad, pr.alpha_per_arm, "V7 disabled"),
            _verdict_case("same, curriculum seed variance equal to the baseline's", good, pr.alpha_per_arm,
                          "V7 disabled"))
