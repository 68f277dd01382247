"""V1 muP: coord-check slopes and their falsifier, lr-transfer plumbing and its falsifier."""
from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from accelerators import mup_transfer
from accelerators.mup_transfer import (BETA1_GRID, LR_GRID, TransferConfig, TransferError, best_index, load_study,
                                       mup_verdict, run_family, transfer_lr, transfer_verdict, write_study)
from coord_check import CoordCheckConfig, fit_result, fit_slope, run_coord_check
from igla_jax.evidence.prereg import load_prereg

PR = load_prereg()
THR = PR.mup_slope_max


def _power_law(cfg: CoordCheckConfig, exponents: dict[str, float]) -> dict:
    """values[attn][layer][seed, width, step] = c(seed, step) * width ** exponent."""
    w = np.asarray(cfg.widths, float)
    out = {}
    for layer, e in exponents.items():
        v = np.empty((cfg.seeds, len(w), cfg.steps))
        for s in range(cfg.seeds):
            for t in range(cfg.steps):
                v[s, :, t] = (1.0 + 0.1 * s + 0.05 * t) * w**e
        out[layer] = v
    return {"attn": out}


SYN = CoordCheckConfig(families=("attn",), widths=(8, 16, 32, 64), steps=3, seeds=2)


def test_fit_slope_recovers_a_power_law():
    w = (8, 16, 32, 64)
    assert fit_slope(w, [3.0 * x**-0.5 for x in w]) == pytest.approx(-0.5, abs=1e-9)
    assert fit_slope(w, [2.0] * 4) == pytest.approx(0.0, abs=1e-12)
    assert fit_slope(w, [1.0, 0.0, 1.0, 1.0]) is None          # exactly zero: no logarithm
    assert math.isnan(fit_slope(w, [1.0, float("nan"), 1.0, 1.0]))


@pytest.fixture(scope="module")
def sp_result():
    return run_coord_check(CoordCheckConfig(families=("attn",), widths=(8, 16, 32), steps=2, seeds=2, param="sp"))


@pytest.fixture(scope="module")
def mup_result():
    # The valid arm runs at widths 32-128 (default 32 seeds, vmapped): at widths 8-16 muP's
    # finite-width corrections exceed the bound (coord_check/README.md), so a check there cannot be
    # the "muP passes" case. Measured statistic here: 0.07 (attn block1/mlp, t = 3).
    return run_coord_check(CoordCheckConfig(families=("attn",), widths=(32, 64, 128), steps=3))


def test_falsify_mup_coord_check(sp_result, mup_result):
    # violating slopes (a layer growing like width^(2 thr)) disable V1 and are named
    bad = mup_verdict(fit_result(SYN, _power_law(SYN, {"embedding": 0.0, "block0/mlp": 2 * THR})))
    assert not bad.enabled and bad.statistic == pytest.approx(2 * THR, rel=1e-9)
    assert "block0/mlp" in bad.reason and bad.threshold == THR
    # slopes inside the bound enable it
    good = mup_verdict(fit_result(SYN, _power_law(SYN, {"embedding": 0.0, "block0/mlp": THR / 2})))
    assert good.enabled and good.statistic == pytest.approx(THR / 2, rel=1e-9)
    # the standard parametrization fails the same check on real models (embedding std 1/sqrt(d))
    sp = mup_verdict(sp_result)
    assert not sp.enabled and sp.statistic >= THR
    assert sp_result.slopes["attn"]["embedding"][0] == pytest.approx(-0.5, abs=0.05)
    # muP passes it
    v = mup_verdict(mup_result)
    assert v.enabled, v.reason


def test_non_finite_slope_disables():
    vals = _power_law(SYN, {"embedding": 0.0})
    vals["attn"]["embedding"][0, 1, 2] = np.inf
    v = mup_verdict(fit_result(SYN, vals))
    assert not v.enabled and "not finite" in v.reason


def test_zero_by_construction_is_excluded_and_listed(mup_result, sp_result):
    vals = _power_law(SYN, {"readout/logits": 0.0, "embedding": 0.0})
    vals["attn"]["readout/logits"][:, :, 0] = 0.0
    r = fit_result(SYN, vals)
    assert r.excluded == (("attn", "readout/logits", 1),)
    assert r.slopes["attn"]["readout/logits"][0] is None and mup_verdict(r).enabled
    # real models: muP's zero-initialised readout gives exactly-zero logits at t = 1 only; sp's does not
    assert mup_result.excluded == (("attn", "readout/logits", 1),)
    assert sp_result.excluded == ()
    # t = 1 is the initialisation and the first update only touches the readout (its gradient is
    # the only non-zero one), so every hidden layer reads the same at t = 1 and t = 2
    v = mup_result.values["attn"]["block0/mlp"]
    np.testing.assert_array_equal(v[:, :, 0], v[:, :, 1])


def _study(shifts: dict[str, int]) -> dict:
    i = 2
    fams = {}
    for fam, sh in shifts.items():
        targets = {"128": {"shift": sh, "best_lr": LR_GRID[i + sh], "runs": []},
                   "256": {"shift": 0, "best_lr": LR_GRID[i], "runs": []}}
        best = {"lr": LR_GRID[i], "beta1": BETA1_GRID[1], "lr_index": i, "loss_bits": 3.9}
        fams[fam] = {"mup": {"proxy": {"width": 16, "runs": [], "best": best, "wall_s": 1.0}, "targets": targets}}
    return {"version": 1, "config": {"d_base": 128, "proxy_width": 16}, "families": fams}


def test_falsify_transfer_verdict():
    assert PR.lr_transfer_max_shift == 1, "the cases below are written for the v2 tolerance of one 2x step"
    moved = transfer_verdict(_study({"attn": 0, "jepa": 2, "hybrid": -1}), "mup", PR)
    assert not moved.enabled and moved.statistic == 2 and "jepa w128" in moved.reason
    held = transfer_verdict(_study({"attn": 0, "jepa": 1, "hybrid": -1}), "mup", PR)
    assert held.enabled and held.statistic == 1 and held.threshold == 1
    assert transfer_verdict(_study({"attn": 1})) == transfer_verdict(_study({"attn": 1}), "mup", PR)  # default


def test_falsify_transfer_tolerance_is_the_preregistered_one():
    """The lr-transfer tolerance is prereg.lr_transfer_max_shift, not a code constant."""
    assert not hasattr(mup_transfer, "MAX_SHIFT"), "a second copy of a pre-registered constant"
    two = dataclasses.replace(PR, lr_transfer_max_shift=2)
    zero = dataclasses.replace(PR, lr_transfer_max_shift=0)
    moved = _study({"attn": 0, "jepa": 2, "hybrid": -1})
    v = transfer_verdict(moved, "mup", two)
    assert v.enabled and v.threshold == 2 and "within 2 grid steps (lr_transfer_max_shift)" in v.reason
    v = transfer_verdict(_study({"attn": 0, "jepa": 1}), "mup", zero)
    assert not v.enabled and v.threshold == 0 and "jepa w128: 1 steps" in v.reason
    assert transfer_verdict(_study({"attn": 0}), "mup", zero).enabled


def test_mup_verdict_is_documented_as_a_deterministic_bound():
    for f in (mup_verdict, transfer_verdict):
        assert "not a statistical test" in f.__doc__


def test_transfer_lr_reads_the_proxy_best(tmp_path):
    study = _study({"attn": 0})
    assert transfer_lr("attn", 256, study=study) == (LR_GRID[2], BETA1_GRID[1])
    path = write_study(study, tmp_path / "s.json")
    assert transfer_lr("attn", 128, study=path) == (LR_GRID[2], BETA1_GRID[1])
    with pytest.raises(TransferError, match="d_base"):
        transfer_lr("attn", 128, d_base=64, study=study)
    with pytest.raises(TransferError, match="hybrid"):
        transfer_lr("hybrid", 128, study=study)
    with pytest.raises(TransferError, match="target_width"):
        transfer_lr("attn", 8, study=study)
    with pytest.raises(TransferError, match="experiments.mup_transfer"):
        load_study(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{\"version\": 99}")
    with pytest.raises(TransferError, match="version"):
        load_study(tmp_path / "bad.json")


def test_committed_study_is_readable():
    """The committed study (assertions/mup_transfer.json) gives grid values for every family."""
    data = load_study()
    for fam in ("attn", "jepa", "hybrid"):
        lr, b1 = transfer_lr(fam, 256, study=data)
        assert lr in data["config"]["lrs"] and b1 in data["config"]["beta1s"]


def test_best_index_skips_diverged_runs():
    assert best_index([3.0, math.inf, 2.5, 2.5]) == 2
    assert best_index([math.inf, math.inf]) is None


def test_run_family_tiny(tmp_path):
    cfg = TransferConfig(families=("attn",), params=("mup",), proxy_width=8, target_widths=(16,),
                         lrs=(1e-3, 4e-3, 1.6e-2), beta1s=(0.9,), steps=4, batch=2, context=8)
    out = run_family(cfg, "attn", "mup", prereg=dataclasses.replace(PR, lr_transfer_max_shift=0))
    assert len(out["proxy"]["runs"]) == 3 and out["proxy"]["best"]["lr"] in cfg.lrs
    t = out["targets"]["16"]
    assert t["shift"] == t["lr_index"] - out["proxy"]["best"]["lr_index"]
    assert t["within_one_step"] == (t["shift"] == 0)   # the tolerance given (0 steps), not a constant
    assert all(math.isfinite(r["loss_bits"]) for r in out["proxy"]["runs"] + t["runs"])
    json.dumps(out)   # JSON-ready


@pytest.mark.parametrize("argv", [["--widths", "12", "16"], ["--widths", "8"], ["--steps", "0"]])
def test_coord_check_cli_rejects_bad_flags(argv, capsys):
    from coord_check.__main__ import main
    assert main(argv) == 2
    assert "error:" in capsys.readouterr().err


def test_transfer_cli_rejects_bad_flags(capsys):
    from experiments.studies.mup_transfer import main
    assert main(["--proxy-width", "12"]) == 2
    assert "proxy_width" in capsys.readouterr().err
