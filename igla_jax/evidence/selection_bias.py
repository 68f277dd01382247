"""Selection bias of a race followed by confirmation: the victory rule's false-positive rate under the null.

The minimum of k noisy validation scores is biased low (REFERENCE.md section 9), so a victory
rule that lets the selected run, or the data half it was selected on, into the t-test accepts
too often. This module measures how often, with a pure numpy Monte-Carlo of the race under the
null hypothesis (every one of the k configs has true mean BPB prereg.mu0).

Model of one trained run of a config with true mean mu:
  val  = mu + s + e_val     (validation half: every selecting component reads it)
  test = mu + s + e_test    (test half: only the victory rule reads it)
with s ~ N(0, sd_seed) the training-seed effect, shared by both halves of one run, and e_val,
e_test ~ N(0, sd_eval) independent evaluation noise of each half. The race trains k configs on
one search seed and selects the lowest val. Then three confirmation rules build the triple that
the pre-registered aggregate checks (`igla_jax.evidence.victory.aggregate_accepts`: band, each below
target, mean <= mu0 - effect_size, one-tailed one-sample t-test at alpha) judge:
  "old":             the selected run's own val + val of 2 fresh runs on other seeds (prereg v1);
  "test_split_only": the selected run's own test + test of 2 fresh runs;
  "new":             test of 3 fresh from-scratch runs, none of them the selected run (prereg v2).
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import numpy as np

from igla_jax.evidence.prereg import Prereg
from igla_jax.evidence.victory import aggregate_accepts

RULES = ("old", "test_split_only", "new")


def _check_sd(name: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
        raise ValueError(f"selection_bias: {name} must be a finite number >= 0, got {v!r}")
    return float(v)


def simulate_triples(prereg: Prereg, *, k: int, sd_seed: float, sd_eval: float, draws: int,
                     seed: int = 0) -> dict[str, np.ndarray]:
    """The draws x n_seeds triple each rule hands the victory checks, one null race per row."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"selection_bias: k (configs in the race) must be an integer >= 1, got {k!r}")
    sd_seed, sd_eval = _check_sd("sd_seed", sd_seed), _check_sd("sd_eval", sd_eval)
    if sd_seed == 0 and sd_eval == 0:
        raise ValueError("selection_bias: sd_seed and sd_eval are both 0: every score equals mu0 exactly")
    n, m, mu = draws, len(prereg.seeds), prereg.mu0
    rng = np.random.default_rng(seed)
    # The race: k configs, one run each on the search seed.
    s_NxK = rng.normal(0.0, sd_seed, (n, k))
    val_NxK = mu + s_NxK + rng.normal(0.0, sd_eval, (n, k))
    test_NxK = mu + s_NxK + rng.normal(0.0, sd_eval, (n, k))
    j_N = np.argmin(val_NxK, axis=1)
    pick_N = np.arange(n)
    sel_val_N, sel_test_N = val_NxK[pick_N, j_N], test_NxK[pick_N, j_N]
    # Fresh from-scratch runs of the selected config on the m victory seeds.
    f_NxM = rng.normal(0.0, sd_seed, (n, m))
    fval_NxM = mu + f_NxM + rng.normal(0.0, sd_eval, (n, m))
    ftest_NxM = mu + f_NxM + rng.normal(0.0, sd_eval, (n, m))
    return {
        "old": np.column_stack([sel_val_N, fval_NxM[:, :m - 1]]),
        "test_split_only": np.column_stack([sel_test_N, ftest_NxM[:, :m - 1]]),
        "new": ftest_NxM,
    }


def false_positive_rates(prereg: Prereg, *, k: int, sd_seed: float, sd_eval: float,
                         draws: int | None = None, seed: int = 0) -> dict[str, float]:
    """Fraction of null races (every config's true mean = mu0) that each rule declares a victory.

    Args:
      prereg: the pre-registration (mu0, seeds, alpha, target, effect size, band, null_sim_draws).
      k: configs the race trains and selects among (e.g. a quick race's 27 trials).
      sd_seed: sd of the training-seed effect shared by the validation and test halves of a run.
      sd_eval: sd of each half's independent evaluation noise.
      draws: simulated races, at least prereg.null_sim_draws (the default).
      seed: numpy seed; the result is a pure function of the arguments.
    Returns:
      {"old": rate, "test_split_only": rate, "new": rate}; each estimate has binomial standard
      error sqrt(rate (1 - rate) / draws).
    """
    n = prereg.null_sim_draws if draws is None else draws
    if isinstance(n, bool) or not isinstance(n, int) or n < prereg.null_sim_draws:
        raise ValueError(f"selection_bias: draws={n!r} is below the pre-registered null_sim_draws "
                         f"{prereg.null_sim_draws}")
    triples = simulate_triples(prereg, k=k, sd_seed=sd_seed, sd_eval=sd_eval, draws=n, seed=seed)
    return {rule: float(aggregate_accepts(triples[rule], prereg).mean()) for rule in RULES}


class NoiseEstimate(NamedTuple):
    """sd_seed and sd_eval estimated from measured runs (unpacks as `sd_seed, sd_eval = ...`)."""
    sd_seed: float
    sd_eval: float


def estimate_noise(records: Iterable[Sequence[Any]]) -> NoiseEstimate:
    """Method-of-moments sd_seed and sd_eval from runs given as (config, seed, val_bpb, test_bpb).

    Per run, the half-sum mean m = (val + test) / 2 = mu_c + s + (e_val + e_test) / 2 has variance
    sd_seed^2 + sd_eval^2 / 2 across seeds of one config, and the difference d = val - test =
    (mu_c offset) + e_val - e_test has variance 2 sd_eval^2. With pooled within-config variances
    (each config's own mean removed, dof = sum over configs of (runs - 1); a config with one run
    adds nothing): sd_eval = sqrt(pooled var(d) / 2), and
    sd_seed = sqrt(max(0, pooled var(m) - sd_eval^2 / 2)) (the eval-noise share of m's spread
    removed; clipped at 0 when noise exceeds it). Removing each config's mean d absorbs a fixed
    difficulty gap between the halves. Raises ValueError on a non-finite value, a repeated
    (config, seed) pair, or when no config has two runs.
    """
    by_config: dict[Any, dict[Any, tuple[float, float]]] = {}
    for i, rec in enumerate(records):
        if len(rec) != 4:
            raise ValueError(f"estimate_noise: record {i} {rec!r} is not (config, seed, val_bpb, test_bpb)")
        cfg, s, v, t = rec
        for name, x in (("val_bpb", v), ("test_bpb", t)):
            if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
                raise ValueError(f"estimate_noise: record {i} ({cfg!r}, seed {s!r}): {name} {x!r} is not finite")
        runs = by_config.setdefault(cfg, {})
        if s in runs:
            raise ValueError(f"estimate_noise: record {i}: config {cfg!r} seed {s!r} appears twice")
        runs[s] = (float(v), float(t))
    ss_m = ss_d = 0.0
    dof = 0
    for runs in by_config.values():
        if len(runs) < 2:
            continue
        vt = np.array(list(runs.values()))
        m, d = vt.mean(axis=1), vt[:, 0] - vt[:, 1]
        ss_m += float(((m - m.mean()) ** 2).sum())
        ss_d += float(((d - d.mean()) ** 2).sum())
        dof += len(runs) - 1
    if dof == 0:
        raise ValueError("estimate_noise: no config has runs on two or more seeds; cannot estimate a spread")
    var_eval = ss_d / dof / 2.0
    return NoiseEstimate(math.sqrt(max(0.0, ss_m / dof - var_eval / 2.0)), math.sqrt(var_eval))
