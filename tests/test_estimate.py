"""The race wall-time estimate: the pure arithmetic on made-up timings, then the CLI line (smoke, forced)."""
from __future__ import annotations

import pytest

from igla_jax.execution.estimate import (LONG_RACE_S, Calibration, RaceEstimate, estimate_lines, estimate_race,
                                         fill_step_s)
from igla_jax.execution.race_runner import planned_steps
from igla_jax.search.race_types import RaceConfig

CFG = RaceConfig(rungs=(10, 30), eta=3, seed=0, max_trials=9, victory_seeds=(1, 2, 3), reproduce_tol=1e-4,
                 families=("attn", "jepa"))
STEP_S = {("attn", 16, 2): 0.1, ("attn", 32, 2): 0.3, ("jepa", 16, 2): 0.2, ("jepa", 32, 2): 0.2}


def test_estimate_race_known_answer():
    est = estimate_race(CFG, STEP_S, {k: 1.0 for k in STEP_S}, {k: 0.5 for k in STEP_S})
    # rung 0: 9 trials x 10 steps; rung 1: 3 x 20; confirmation: (3 victory seeds + reproduce) x 30
    assert est.steps == 90 + 60 + 120 == planned_steps(CFG)
    assert est.evaluations == 9 + 3 + (2 * 3 + 1)
    assert est.mean_step_s == pytest.approx(0.2) and est.max_step_s == 0.3 and est.min_step_s == 0.1
    assert est.train_s == pytest.approx(270 * 0.2)
    assert est.eval_s == pytest.approx(19 * 0.5)
    # 4.5 draws per family over 2 shapes: each shape compiled with probability 1 - 0.5 ** 4.5
    assert est.compile_s == pytest.approx(4 * (1 - 0.5 ** 4.5))
    assert est.total_s == pytest.approx(54 + 9.5 + est.compile_s)
    assert est.high_s == pytest.approx(90 * 0.2 + 180 * 0.3 + 9.5 + est.compile_s)


def test_estimate_race_without_confirmation_or_extras():
    est = estimate_race(RaceConfig(rungs=(10, 30), eta=3, seed=0, max_trials=9, victory_seeds=(1, 2, 3),
                                   reproduce_tol=1e-4, families=("attn", "jepa"), confirm=False), STEP_S, {})
    assert (est.steps, est.evaluations, est.compile_s, est.eval_s) == (150, 12, 0.0, 0.0)
    assert est.total_s == pytest.approx(150 * 0.2)


def test_fill_step_s_recovers_a_linear_cost_model():
    # attn: t = 0.01 + 1e-11 x FLOPs (two points fix the overhead); jepa: slope 2e-11 from one point;
    # hybrid: nothing measured, so the mean slope 1.5e-11.
    flops = {("attn", 1, 1): 1e9, ("attn", 2, 1): 3e9, ("attn", 3, 1): 2e9,
             ("jepa", 1, 1): 1e9, ("jepa", 2, 1): 4e9, ("hybrid", 1, 1): 2e9}
    measured = {("attn", 1, 1): 0.02, ("attn", 2, 1): 0.04, ("jepa", 1, 1): 0.03}
    got = fill_step_s(measured, flops)
    want = {("attn", 1, 1): 0.02, ("attn", 2, 1): 0.04, ("attn", 3, 1): 0.03,
            ("jepa", 1, 1): 0.03, ("jepa", 2, 1): 0.09, ("hybrid", 1, 1): 0.04}
    assert got == pytest.approx(want, rel=1e-9)


def test_fill_step_s_single_points_are_proportional():
    got = fill_step_s({("attn", 1, 1): 0.02}, {("attn", 1, 1): 1e9, ("attn", 2, 1): 5e9})
    assert got[("attn", 2, 1)] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="no measured shape"):
        fill_step_s({}, {("attn", 1, 1): 1e9})


def _est(total: float) -> RaceEstimate:
    return RaceEstimate(total_s=total, high_s=2 * total, train_s=total, eval_s=0.0, compile_s=0.0, steps=1000,
                        evaluations=10, mean_step_s=0.1, min_step_s=0.05, max_step_s=0.2)


def test_long_race_advice_only_past_the_threshold_on_cpu():
    cal = Calibration(step_s={("attn", 1, 1): 0.1}, compile_s={}, flops={("attn", 1, 1): 1.0, ("attn", 2, 1): 2.0},
                      eval_tokens=1, tokens_per_step=1, wall_s=3.0)
    long = estimate_lines(_est(LONG_RACE_S * 2), cal, preset="full", backend="cpu")
    assert long[0].startswith("estimated wall time") and "calibrated on 1 of 2 shapes" in long[0]
    assert len(long) == 2 and "--preset quick" in long[1] and "--budget" in long[1]
    assert len(estimate_lines(_est(LONG_RACE_S / 2), cal, preset="full", backend="cpu")) == 1
    assert len(estimate_lines(_est(LONG_RACE_S * 2), cal, preset="full", backend="gpu")) == 1


def _cli(monkeypatch, tmp_path, *flags: str) -> None:
    """Runs the race CLI on smoke up to run_race (replaced by an interrupt)."""
    import igla_jax.execution.race_runner as rr
    from experiments import race

    def stop(**_):
        raise KeyboardInterrupt
    monkeypatch.setattr(rr, "run_race", stop)
    monkeypatch.setenv("IGLA_JAX_CACHE", "")
    rc = race.main(["--seed", "3", "--preset", "smoke", "--out", str(tmp_path / "r"), "--mup", "off",
                    "--zero-cost", "off", *flags])
    assert rc == 130


def test_cli_prints_the_estimate_when_forced_on_smoke(monkeypatch, tmp_path, capsys):
    _cli(monkeypatch, tmp_path, "--estimate")
    out = capsys.readouterr().out
    line = next(l for l in out.splitlines() if l.startswith("estimated wall time"))
    assert "steps at" in line and "calibrated on 3 of 3 shapes" in line


def test_cli_skips_the_estimate_on_smoke_and_with_no_estimate(monkeypatch, tmp_path, capsys):
    import igla_jax.execution.estimate as est

    def boom(*a, **k):
        raise AssertionError("calibrate must not run")
    monkeypatch.setattr(est, "calibrate", boom)
    _cli(monkeypatch, tmp_path)
    _cli(monkeypatch, tmp_path, "--estimate", "--no-estimate")
    assert "estimated wall time" not in capsys.readouterr().out
