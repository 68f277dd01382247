"""The hypothesis harness (issue 11): every search method replayed on one curve table, one simulated budget, one metric.

A method is a callable (table, repeat, workers, budget_s) -> Trajectory (`trajectory`), registered
by name and replayed by `methods`; ours and the baselines are `replay_methods` (and
`replay_methods_v4`), the field's tools `peers` with one adapter module each (optional, the compare
extra; `peer_speedups` and `exact_truncnorm` make them fast without changing a decision). `judge`
owns everything they are judged by (truth, budget, metric, intervals, the paired test, H(1), H(2));
`report` runs it end to end and writes the document; `tables` builds synthetic tables. The command
line is `python -m experiments.hypothesis` (also `python -m experiments.harness`).

Imports igla_jax and accelerators, never the rest of experiments (its `__main__` aside). The names of the
harness's core are re-exported here.
"""
from experiments.harness.judge import (Arrays, Truth, arrays, budget_s, cheap_failure, draw_worlds, evaluate,
                                       first_hits, full_cost_s, interval, ratio, regret_curve, sign_test, table_truth,
                                       time_to_tol, top_set)
from experiments.harness.methods import METHODS, MethodSpec, Run, load_peers, register_method, run_methods
from experiments.harness.report import plot_regret
from experiments.harness.trajectory import BASELINES, GRID, INF, HarnessError, Method, Trajectory

__all__ = ["Arrays", "Truth", "arrays", "budget_s", "cheap_failure", "draw_worlds", "evaluate", "first_hits",
           "full_cost_s", "interval", "ratio", "regret_curve", "sign_test", "table_truth", "time_to_tol", "top_set",
           "METHODS", "MethodSpec", "Run", "load_peers", "register_method", "run_methods", "plot_regret", "BASELINES",
           "GRID", "INF", "HarnessError", "Method", "Trajectory"]
