"""The witness's modes, each run against its judge (`check`), and the table `python -m experiments.needle_falsify` prints."""
from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any, Iterator, Sequence

import igla_jax.evidence.victory as V
from experiments.witness.cases import CAUGHT, NOT_BUILT, NOT_CAUGHT, TWIN_REJECTED, Context, Mode, Outcome, make_context
from experiments.witness.hypothesis_modes import h1_first_promotion, h2_cheap_promotions
from experiments.witness.row_modes import NO_COMMIT, h3_reproduce, h3_unknown_sha, outside_seed, row_mode
from experiments.witness.verdict_modes import v1_mup, v2_zero_cost, v3_bohb, v4_surrogate, v5_phi, v6_ucb, v7_curriculum
from igla_jax.evidence.prereg import Prereg



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
    Mode("row_unknown_sha", **row_mode(V.UNKNOWN_SHA, lambda c: {"row0": {"sha": NO_COMMIT}}, lambda c: {},
                                    "row 0", "rejected")),
    Mode("row_embargoed_sha_full", **row_mode(V.EMBARGOED_SHA, lambda c: {"row0": {"sha": c.leaky}},
                                           lambda c: {"row0": {"sha": c.clean}}, "row 0", "rejected")),
    Mode("row_embargoed_sha_abbreviated", **row_mode(V.EMBARGOED_SHA, lambda c: {"row0": {"sha": c.leaky[:7]}},
                                                  lambda c: {"row0": {"sha": c.clean[:7]}}, "row 0", "rejected")),
    Mode("row_step_too_early", **row_mode(V.STEP_TOO_EARLY, lambda c: {"row0": {"step": c.prereg.min_victory_step - 1}},
                                       lambda c: {"row0": {"step": c.prereg.min_victory_step}}, "row 0", "rejected")),
    Mode("row_bpb_below_band", **row_mode(V.BPB_BELOW_BAND, lambda c: {"row0": {"test_bpb": c.prereg.bpb_band[0] - 0.01}},
                                       lambda c: {}, "row 0", "rejected")),
    Mode("row_bpb_above_band", **row_mode(V.BPB_ABOVE_BAND, lambda c: {"row0": {"test_bpb": c.prereg.bpb_band[1] + 0.01}},
                                       lambda c: {}, "row 0", "rejected")),
    Mode("row_seed_outside_set", **row_mode(V.SEED_OUTSIDE_SET, lambda c: {"row0": {"seed": outside_seed(c.prereg)}},
                                         lambda c: {}, "row 0", "rejected")),
    Mode("row_duplicate_seed", **row_mode(V.DUPLICATE_SEED, lambda c: {"row1": {"seed": c.prereg.seeds[0]}},
                                       lambda c: {}, "row 1", "rejected")),
    Mode("row_dirty_tree", **row_mode(V.DIRTY_TREE, lambda c: {"row0": {"dirty": True}}, lambda c: {}, "row 0", "rejected")),
    Mode("row_test_bpb_missing", **row_mode(V.TEST_BPB_MISSING, lambda c: {"row0": {"test_bpb": None}}, lambda c: {},
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
