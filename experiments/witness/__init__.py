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

Modules: `cases` (Case, Context, Mode, Outcome), the modes (`verdict_modes` V1-V7, `row_modes` the
victory rows and H(3), `hypothesis_modes` H(1), H(2)) and `registry` (MODES, `check`, `run_all`);
the command line is `python -m experiments.needle_falsify`. Imports experiments.harness, never the
rest of experiments.
"""
from experiments.witness.cases import (CAUGHT, NOT_BUILT, NOT_CAUGHT, TEST_FILE, TWIN_REJECTED, Case, Context, Mode,
                                       Outcome, make_context)
from experiments.witness.hypothesis_modes import h1_first_promotion, h2_cheap_promotions
from experiments.witness.registry import MODES, MODE_BY_NAME, Report, check, run_all, table_lines
from experiments.witness.row_modes import (NO_COMMIT, h3_reproduce, h3_unknown_sha, judge_rows, outside_seed,
                                           row_mode, victory_rows)
from experiments.witness.verdict_modes import (v1_mup, v2_zero_cost, v3_bohb, v4_surrogate, v5_phi, v6_ucb,
                                               v7_curriculum)

__all__ = ["CAUGHT", "NOT_BUILT", "NOT_CAUGHT", "TEST_FILE", "TWIN_REJECTED", "Case", "Context", "Mode", "Outcome",
           "make_context", "h1_first_promotion", "h2_cheap_promotions", "MODES", "MODE_BY_NAME", "Report", "check",
           "run_all", "table_lines", "NO_COMMIT", "h3_reproduce", "h3_unknown_sha", "judge_rows", "outside_seed",
           "row_mode", "victory_rows", "v1_mup", "v2_zero_cost", "v3_bohb", "v4_surrogate", "v5_phi", "v6_ucb",
           "v7_curriculum"]
