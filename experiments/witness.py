"""The falsification witness (issue 14): every failure mode of the seed plan, fed to the function the race uses.

Each mode builds a synthetic violating input with the real data structures (coord-check results,
study rows, race trials, ledger rows made by the executor, harness trajectories) and a clean twin
that differs only in the violating part, feeds both to the real judge, and is `caught` only when
the violating input is disabled or rejected *by its own rule* (the rule's name, or for an
accelerator verdict the falsifier's test, in the reason; the pre-registered threshold in force)
and the twin is accepted. Modes whose accelerator is not built report "not built",
never caught. Judges are looked up on their modules at call time, so a test can weaken one
(tests/test_witness_mutations.py). Inputs are sized from `prereg` (the loaded pre-registration);
the judges read `judge_prereg`, which a mutation test may weaken while the inputs stay the same.
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import subprocess
import tempfile
import types
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

import accelerators.mup_transfer as mup_transfer
import accelerators.phi_grid as phi_grid
import accelerators.ucb as ucb
import accelerators.zero_cost as zero_cost
import coord_check.core as coord_core
import experiments.harness as harness
import igla_jax.executor as executor
import igla_jax.ledger as ledger
import igla_jax.victory as V
from igla_jax.prereg import Prereg, load_prereg
from igla_jax.race_types import Confirm, Reproduce, RungResult, Trial
from igla_jax.search_space import DEFAULT_SPACE, Config

CAUGHT, NOT_CAUGHT, TWIN_REJECTED, NOT_BUILT = "caught", "NOT CAUGHT", "TWIN REJECTED", "not built"
TEST_FILE = "tests/test_witness.py"


@dataclasses.dataclass(frozen=True)
class Case:
    """One input fed to a judge and what the judge said."""
    input: str
    rejected: bool       # accelerator disabled / row rejected / hypothesis condition failed
    by_rule: bool        # the rejection names the mode's rule (or its test) under the pre-registered bound
    observed: str


@dataclasses.dataclass(frozen=True)
class Context:
    """What every mode needs: the pre-registration (inputs, judges) and a real two-commit git repository."""
    prereg: Prereg
    judge_prereg: Prereg
    repo: Path
    leaky: str           # the first commit: listed in the embargo file
    clean: str           # the second commit
    embargo: Path
    tmp: Path


@dataclasses.dataclass(frozen=True)
class Mode:
    name: str
    arm: str
    rule: str
    expected: str
    run: Callable[[Context], tuple[Case, Case]] | None   # None: the accelerator is not built
    not_built_input: str = ""

    @property
    def test(self) -> str:
        return f"{TEST_FILE}::test_falsify_{self.name}"


@dataclasses.dataclass(frozen=True)
class Outcome:
    mode: str
    arm: str
    test: str
    input: str
    expected: str
    observed: str
    rule: str
    status: str
    twin_input: str = ""
    twin_observed: str = ""

    def to_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)


# ------------------------------------------------------------------------------------ context
def _git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "w", "GIT_AUTHOR_EMAIL": "w@w", "GIT_COMMITTER_NAME": "w",
           "GIT_COMMITTER_EMAIL": "w@w", "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(repo)}
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
                          env=env).stdout.strip()


def make_context(tmp: Path, prereg: Prereg | None = None, judge_prereg: Prereg | None = None) -> Context:
    """A git repository under tmp with two empty commits (the first embargoed), and the pre-registration."""
    repo = tmp / "repo"
    repo.mkdir(parents=True)
    _git(repo, "init", "-q")
    _git(repo, "commit", "-q", "--allow-empty", "-m", "leaky")
    leaky = _git(repo, "rev-parse", "HEAD")
    _git(repo, "commit", "-q", "--allow-empty", "-m", "clean")
    clean = _git(repo, "rev-parse", "HEAD")
    embargo = tmp / "embargo.txt"
    embargo.write_text(f"{leaky}  # leaked validation bytes\n", encoding="utf-8")
    pr = prereg or load_prereg()
    return Context(pr, judge_prereg or pr, repo, leaky, clean, embargo, tmp)


def _configs(n: int) -> list[Config]:
    """n distinct real configs of the default space, spread over the families."""
    fams = ("attn", "jepa", "hybrid")
    return [DEFAULT_SPACE.config_at(fams[i % 3], 37 * i % DEFAULT_SPACE.size(fams[i % 3])) for i in range(n)]


# ------------------------------------------------------------------------------ accelerators
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


# ------------------------------------------------------------------------------ ledger rows
def victory_rows(ctx: Context, *, sha: str | None = None, row0: dict[str, Any] | None = None,
                 row1: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Three confirmed rows of one config, made by the executor's result_row; row0 / row1 replace LedgerRow fields."""
    pr = ctx.prereg
    make = executor.RowMaker(ledger.CodeVersion(sha or ctx.clean, False), run_id="witness", preset="full")
    top = min(pr.target_bpb, pr.mu0 - pr.effect_size) - 0.1
    cfg = _configs(1)[0]
    rows = []
    for k, seed in enumerate(pr.seeds):
        a = Confirm(k + 1, cfg, seed, max(pr.min_victory_step, pr.rungs[-1]))
        res = types.SimpleNamespace(status="ok", val_bpb=top + 0.01 * k + 0.02, test_bpb=top + 0.01 * k,
                                    step=a.to_step, wall_s=1.0, tokens_per_s=1.0, params=None)
        row = executor.result_row(make, a, res, reproduce_tol=pr.reproduce_tol)
        over = (row0 if k == 0 else row1 if k == 1 else None) or {}
        rows.append(dataclasses.replace(row, **over).to_dict())
    return rows


def judge_rows(ctx: Context, rows: Sequence[dict[str, Any]], rule: str, inp: str) -> Case:
    """winning_seeds as the race calls it (real git resolver, embargo file, require_clean)."""
    v = V.winning_seeds(rows, ctx.judge_prereg, repo_dir=ctx.repo, resolve_commit=V.git_resolver(ctx.repo),
                        embargo_path=ctx.embargo, require_clean=True)
    named = [r for r in v.reasons if f"{rule}:" in r]
    said = named[0] if named else (v.reasons[0] if v.reasons else f"accepted, mean test_bpb {v.mean:.4f}")
    return Case(inp, not v.accepted, bool(named), said)


def _row_mode(rule: str, bad: Callable[[Context], dict[str, Any]], good: Callable[[Context], dict[str, Any]],
              what: str) -> Callable[[Context], tuple[Case, Case]]:
    def run(ctx: Context) -> tuple[Case, Case]:
        b, g = bad(ctx), good(ctx)
        return (judge_rows(ctx, victory_rows(ctx, **b), rule, _show(b) if b else what),
                judge_rows(ctx, victory_rows(ctx, **g), rule, _show(g) if g else f"{what} as made"))
    return run


def _show(kw: dict[str, Any]) -> str:
    return ", ".join(f"{k[:3]} {k[3:]}.{f} = {v:.6g}" if isinstance(v, float) else f"{k[:3]} {k[3:]}.{f} = {v}"
                     for k, d in kw.items() for f, v in d.items()) or "as made"


NO_COMMIT = hashlib.sha1(b"witness: a commit that does not exist").hexdigest()


def _outside_seed(pr: Prereg) -> int:
    return next(s for s in range(max(pr.seeds) + 1, max(pr.seeds) + 100) if s not in pr.seeds)


def h3_unknown_sha(ctx: Context) -> tuple[Case, Case]:
    """The victory triple written to a seed_results.jsonl and read back; its sha names no commit."""
    def through_file(sha: str, name: str) -> list[dict[str, Any]]:
        path = ctx.tmp / name / "seed_results.jsonl"
        lg = ledger.Ledger(path)
        for r in victory_rows(ctx, sha=sha):
            lg.append(r)
        return ledger.read_ledger(path).rows
    return (judge_rows(ctx, through_file(NO_COMMIT, "bad"), V.UNKNOWN_SHA, f"seed_results.jsonl rows, sha {NO_COMMIT[:12]} (no commit)"),
            judge_rows(ctx, through_file(ctx.clean, "good"), V.UNKNOWN_SHA, f"same rows, sha {ctx.clean[:12]} (the commit)"))


def h3_reproduce(ctx: Context) -> tuple[Case, Case]:
    """The champion's from-scratch re-run on its search seed, recorded by the executor's result_row."""
    pr, jp = ctx.prereg, ctx.judge_prereg
    make = executor.RowMaker(ledger.CodeVersion(ctx.clean, False), run_id="witness", preset="full")
    orig = pr.mu0 - 0.1

    def judge(delta: float) -> Case:
        a = Reproduce(9, _configs(1)[0], 7, pr.rungs[-1], orig)
        res = types.SimpleNamespace(status="ok", val_bpb=orig + delta, step=a.to_step, wall_s=1.0, tokens_per_s=1.0)
        row = executor.result_row(make, a, res, reproduce_tol=jp.reproduce_tol)
        return Case(f"reproduce row {delta:+g} BPB from the champion's", row.status != "reproduced",
                    row.status not in ledger.VICTORY_STATUSES and f"> tol {jp.reproduce_tol}" in (row.note or ""),
                    f"status {row.status!r}: {row.note}")
    return judge(2 * pr.reproduce_tol), judge(pr.reproduce_tol / 2)


# ------------------------------------------------------------------------------ hypothesis H
def _harness_rows(ctx: Context, first_ratio: float, bad_promotions: int) -> dict[str, Any]:
    """harness.evaluate on a 20-config truth: the uniform grid and asha+v5, 3 repeats at 1 worker."""
    ids = [c.config_id for c in _configs(20)]
    true = np.array([ctx.prereg.mu0 - 0.01 * (20 - i) for i in range(20)])
    truth = harness.Truth(tuple(ids), ("uniform",) * 20, true, {c: i for i, c in enumerate(ids)})
    n_top = int(harness.top_set(true, ctx.prereg.cheap_promotion_top_fraction).sum())
    cheap = tuple(ids[-1 - j] for j in range(bad_promotions)) + tuple(ids[j % n_top] for j in range(10 - bad_promotions))
    grid_first = 1000.0
    trajs = {}
    for m, first, promo in (("uniform_grid", grid_first, ()), ("asha+v5", first_ratio * grid_first, cheap)):
        trajs[(m, 1)] = [harness.Trajectory(m, r, 1, ((500.0, ids[0], float(true[0])),), first, promo, 2000.0)
                         for r in range(3)]
    rows = harness.evaluate(trajs, truth, 1e4, ctx.judge_prereg, kinds={"uniform_grid": "baseline", "asha+v5": "ours"},
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


# ------------------------------------------------------------------------------ the registry
def _rows(rule: str, bad: Callable[[Context], dict], good: Callable[[Context], dict], what: str, expected: str) -> dict:
    return dict(arm="rows", rule=f"victory.{rule}", expected=expected, run=_row_mode(rule, bad, good, what))


MODES: tuple[Mode, ...] = (
    Mode("v1_mup", "V1", "mup_verdict: |slope| < mup_slope_max", "V1 disabled", v1_mup),
    Mode("v2_zero_cost", "V2", "proxy_verdict: bootstrap lower bound at alpha/bonferroni_n >= proxy_rho_min",
         "V2 disabled", v2_zero_cost),
    Mode("v3_bohb", "V3", "bohb_verdict: BOHB regret at the pre-registered T below plain ASHA's "
         "(paired one-sided Wilcoxon at alpha/bonferroni_n)", "V3 disabled", v3_bohb),
    Mode("v4_surrogate", "V4", "surrogate_verdict: held-out MAE <= surrogate_mae_max at every pruning rung "
         "(and the top-pruned share <= surrogate_top_pruned_max)", "V4 disabled", v4_surrogate),
    Mode("v5_phi_grid", "V5", "phi_verdict: one-sided Mann-Whitney U at alpha/bonferroni_n", "V5 disabled", v5_phi),
    Mode("v6_ucb", "V6", "ucb_verdict: UCB1 regret over the last ucb_regret_windows windows below round robin's "
         "(paired one-sided Wilcoxon at alpha/bonferroni_n)", "V6 disabled", v6_ucb),
    Mode("v7_curriculum", "V7", "curriculum_verdict: across-seed variance increase <= curriculum_var_increase_max "
         "(one-sided Brown-Forsythe at alpha/bonferroni_n), and a gain at matched wall-clock", "V7 disabled",
         v7_curriculum),
    Mode("row_unknown_sha", **_rows(V.UNKNOWN_SHA, lambda c: {"row0": {"sha": NO_COMMIT}}, lambda c: {},
                                    "row 0", "rejected")),
    Mode("row_embargoed_sha_full", **_rows(V.EMBARGOED_SHA, lambda c: {"row0": {"sha": c.leaky}},
                                           lambda c: {"row0": {"sha": c.clean}}, "row 0", "rejected")),
    Mode("row_embargoed_sha_abbreviated", **_rows(V.EMBARGOED_SHA, lambda c: {"row0": {"sha": c.leaky[:7]}},
                                                  lambda c: {"row0": {"sha": c.clean[:7]}}, "row 0", "rejected")),
    Mode("row_step_too_early", **_rows(V.STEP_TOO_EARLY, lambda c: {"row0": {"step": c.prereg.min_victory_step - 1}},
                                       lambda c: {"row0": {"step": c.prereg.min_victory_step}}, "row 0", "rejected")),
    Mode("row_bpb_below_band", **_rows(V.BPB_BELOW_BAND, lambda c: {"row0": {"test_bpb": c.prereg.bpb_band[0] - 0.01}},
                                       lambda c: {}, "row 0", "rejected")),
    Mode("row_bpb_above_band", **_rows(V.BPB_ABOVE_BAND, lambda c: {"row0": {"test_bpb": c.prereg.bpb_band[1] + 0.01}},
                                       lambda c: {}, "row 0", "rejected")),
    Mode("row_seed_outside_set", **_rows(V.SEED_OUTSIDE_SET, lambda c: {"row0": {"seed": _outside_seed(c.prereg)}},
                                         lambda c: {}, "row 0", "rejected")),
    Mode("row_duplicate_seed", **_rows(V.DUPLICATE_SEED, lambda c: {"row1": {"seed": c.prereg.seeds[0]}},
                                       lambda c: {}, "row 1", "rejected")),
    Mode("row_dirty_tree", **_rows(V.DIRTY_TREE, lambda c: {"row0": {"dirty": True}}, lambda c: {}, "row 0", "rejected")),
    Mode("row_test_bpb_missing", **_rows(V.TEST_BPB_MISSING, lambda c: {"row0": {"test_bpb": None}}, lambda c: {},
                                         "row 0 (validation bpb present)", "rejected")),
    Mode("h1_first_promotion", "H(1)", "harness.evaluate (_h1): first promotion <= harness_first_promotion_ratio_max x grid",
         "H(1) fails", h1_first_promotion),
    Mode("h2_cheap_promotions", "H(2)", "harness.evaluate (cheap_failure, top_set): outside-top share <= cheap_promotion_fail_max",
         "H(2) falsified", h2_cheap_promotions),
    Mode("h3_reproduce", "H(3)", "executor.result_row: |delta| <= reproduce_tol, else 'trained' (never counted)",
         "not 'reproduced'", h3_reproduce),
    Mode("h3_unknown_sha_row", "H(3)", f"victory.{V.UNKNOWN_SHA}", "rejected", h3_unknown_sha),
)
MODE_BY_NAME = {m.name: m for m in MODES}


def check(mode: Mode, ctx: Context) -> Outcome:
    """Runs one mode: its violating input must be rejected by its rule, its clean twin accepted."""
    if mode.run is None:
        return Outcome(mode.name, mode.arm, mode.test, mode.not_built_input, mode.expected,
                       f"not built: no {mode.arm} accelerator to feed", mode.rule, NOT_BUILT)
    bad, good = mode.run(ctx)
    caught = bad.rejected and bad.by_rule
    status = CAUGHT if caught and not good.rejected else NOT_CAUGHT if not caught else TWIN_REJECTED
    return Outcome(mode.name, mode.arm, mode.test, bad.input, mode.expected, bad.observed, mode.rule, status,
                   good.input, good.observed)


@dataclasses.dataclass(frozen=True)
class Report:
    outcomes: tuple[Outcome, ...]

    @property
    def ok(self) -> bool:
        return all(o.status == CAUGHT for o in self.outcomes)

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "modes": [o.to_dict() for o in self.outcomes]}


def run_all(names: Sequence[str] | None = None, *, judge_prereg: Prereg | None = None) -> Report:
    """Every mode (or the named ones) in a fresh temporary repository."""
    modes = [MODE_BY_NAME[n] for n in names] if names is not None else list(MODES)
    with tempfile.TemporaryDirectory(prefix="igla-witness-") as d:
        ctx = make_context(Path(d), judge_prereg=judge_prereg)
        return Report(tuple(check(m, ctx) for m in modes))


def table_lines(report: Report) -> Iterator[str]:
    """The table: mode, input, expected, observed, rule (and the twin's line under each built mode)."""
    cut = lambda s, n: s if len(s) <= n else s[: n - 3] + "..."  # noqa: E731
    yield f"{'mode':30} {'status':13} {'input':58} {'expected':16} observed | rule"
    for o in report.outcomes:
        yield f"{o.mode:30} {o.status:13} {cut(o.input, 58):58} {o.expected:16} {cut(o.observed, 110)} | {o.rule}"
        if o.twin_input:
            yield f"{'':30} {'  clean twin':13} {cut(o.twin_input, 58):58} {'accepted':16} {cut(o.twin_observed, 110)}"
    n = sum(o.status == CAUGHT for o in report.outcomes)
    nb = sum(o.status == NOT_BUILT for o in report.outcomes)
    yield f"{n}/{len(report.outcomes)} modes caught with their clean twins accepted; {nb} not built"
