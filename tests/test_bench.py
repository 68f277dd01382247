"""Throughput bench: the unpinned sgemm peak's subprocess, MFU arithmetic, and the PyTorch ratio only when measured."""
from __future__ import annotations

import json
import os
import sys

import pytest

from igla_jax.training.bench import OPENBLAS_PINS, mfu, sgemm_peak_unpinned, torch_reference


def test_peak_subprocess_runs_without_the_pins_and_leaves_this_process_alone(monkeypatch):
    # an unrelated OPENBLAS_ variable must reach the child: proves the child reports what it inherited
    monkeypatch.setenv("OPENBLAS_IGLA_TEST_MARK", "1")
    before = dict(os.environ)
    got = sgemm_peak_unpinned(sizes=(32,), reps=1, timeout_s=120)
    assert dict(os.environ) == before
    assert got["openblas_env"].get("OPENBLAS_IGLA_TEST_MARK") == "1"
    assert not set(OPENBLAS_PINS) & set(got["openblas_env"]), got["openblas_env"]
    assert got["gflops"] > 0
    blas = got["blas"]
    assert ("threadpoolctl" in blas) if isinstance(blas, str) else (blas and all("internal_api" in d for d in blas))


def test_mfu_arithmetic():
    # 6 x 1e6 params x 1e4 tokens/s = 6e10 FLOP/s against a 100 GFLOP/s peak
    assert mfu(1_000_000, 10_000.0, 100.0) == pytest.approx(0.6)
    assert mfu(1_000_000, 10_000.0, 50.0) == pytest.approx(1.2)


def test_torch_reference_is_none_without_torch(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)   # import torch now raises ImportError
    assert torch_reference(steps=1, warmup=0) is None


def _bench(monkeypatch, capsys, torch_ref, *flags: str) -> tuple[dict, str]:
    """Runs the bench CLI with every measurement faked (known numbers); returns (JSON, stderr)."""
    from experiments import bench_throughput as bt
    monkeypatch.setattr(bt, "sgemm_peak_gflops", lambda: 50.0)
    monkeypatch.setattr(bt, "sgemm_peak_unpinned", lambda: {"gflops": 100.0, "blas": [{"internal_api": "openblas",
                        "architecture": "SkylakeX", "version": "x", "num_threads": 2}], "openblas_env": {}})
    monkeypatch.setattr(bt, "blas_info", lambda: [{"internal_api": "openblas", "architecture": "Haswell"}])
    # float32 matmuls: 10,000 tokens/s; bfloat16: 15,000
    monkeypatch.setattr(bt, "single_trial", lambda cfg, tc, chunks: {
        "params": 1_000_000, "ms_per_step": 76.8, "tokens_per_s": 15_000.0 if cfg.matmul_dtype == "bfloat16" else 10_000.0})
    monkeypatch.setattr(bt, "population_vs_sequential", lambda *a: {"trials": 2, "speedup": 1.0})
    if torch_ref is None:
        monkeypatch.setitem(sys.modules, "torch", None)   # the real torch_reference, without torch
    else:
        monkeypatch.setattr(bt, "torch_reference", lambda **kw: torch_ref)
    assert bt.main(["--population", "2", *flags]) == 0
    cap = capsys.readouterr()
    return json.loads(cap.out), cap.err


def test_bench_without_torch_prints_no_ratio(monkeypatch, capsys):
    out, err = _bench(monkeypatch, capsys, None)
    assert "vs_pytorch_reference" not in out["single_trial"]
    assert out["pytorch_reference"]["measured"] is False and "torch is not installed" in out["pytorch_reference"]["why"]
    assert "no ratio" in err
    assert out["single_trial"]["mfu_vs_fp32_peak"] == pytest.approx(0.6)
    assert out["single_trial"]["mfu_vs_avx2_pinned_peak"] == pytest.approx(1.2)
    assert (out["sgemm_peak_gflops"], out["sgemm_peak_gflops_pinned"]) == (100.0, 50.0)


def test_bench_with_a_measured_reference_prints_the_ratio(monkeypatch, capsys):
    out, _ = _bench(monkeypatch, capsys, {"params": 900_000, "ms_per_step": 40.0, "tokens_per_s": 20_000.0,
                                          "threads": 2, "version": "fake"})
    assert out["single_trial"]["vs_pytorch_reference"] == pytest.approx(0.5)
    assert out["pytorch_reference"]["mfu_vs_fp32_peak"] == pytest.approx(6 * 900_000 * 20_000 / 100e9, abs=1e-3)


def test_bench_bf16_flag_times_bfloat16_matmuls_beside_float32(monkeypatch, capsys):
    ref = {"params": 900_000, "ms_per_step": 40.0, "tokens_per_s": 20_000.0, "threads": 2, "version": "fake"}
    out, _ = _bench(monkeypatch, capsys, ref)
    assert "single_trial_bf16_matmuls" not in out
    out, _ = _bench(monkeypatch, capsys, ref, "--bf16")
    lo = out["single_trial_bf16_matmuls"]
    assert lo["vs_pytorch_reference"] == pytest.approx(0.75) and out["single_trial"]["vs_pytorch_reference"] == pytest.approx(0.5)
    assert lo["mfu_vs_fp32_peak"] == pytest.approx(0.9)


def test_bench_on_an_accelerator_uses_the_device_peak_and_a_cuda_reference(monkeypatch, capsys):
    """On a GPU backend MFU is against the device's own fp32 matmul rate (not the host CPU's) and the
    PyTorch reference is asked for on cuda."""
    from experiments import bench_throughput as bt
    asked = {}

    def fake_torch(**kw):
        asked.update(kw)
        return {"params": 900_000, "ms_per_step": 4.0, "tokens_per_s": 200_000.0, "threads": 16,
                "version": "fake", "device": kw["device"]}
    monkeypatch.setattr(bt.jax, "default_backend", lambda: "gpu")
    monkeypatch.setattr(bt, "device_matmul_peak", lambda: {"gflops_highest": 1000.0, "gflops_default": 4000.0})
    _bench(monkeypatch, capsys, fake_torch(device="cuda"))   # fakes every measurement
    monkeypatch.setattr(bt, "torch_reference", fake_torch)
    assert bt.main(["--population", "2"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert asked["device"] == "cuda"
    assert out["single_trial"]["mfu_vs_fp32_peak"] == pytest.approx(6 * 1_000_000 * 10_000 / 1000e9, abs=1e-3)
    assert out["single_trial"]["mfu_vs_default_precision_peak"] == pytest.approx(6 * 1_000_000 * 10_000 / 4000e9, abs=1e-4)
    assert "mfu_vs_avx2_pinned_peak" not in out["single_trial"]
    assert out["single_trial"]["vs_pytorch_reference"] == pytest.approx(0.05)
    assert out["device_matmul_peak_gflops"] == {"gflops_highest": 1000.0, "gflops_default": 4000.0}


def test_device_matmul_peak_measures_both_precisions():
    from igla_jax.training.bench import device_matmul_peak
    peak = device_matmul_peak(n=128, reps=2)
    assert set(peak) == {"gflops_highest", "gflops_default"} and all(v > 0 for v in peak.values())


def test_single_trial_reports_its_fastest_chunk_and_the_median():
    from conftest import tiny_model, tiny_train
    from igla_jax.training.bench import single_trial
    r = single_trial(tiny_model(), tiny_train(), chunks=3)
    assert 0 < r["ms_per_step"] <= r["ms_per_step_median"]
    assert r["tokens_per_s"] == pytest.approx(4 * 16 / (r["ms_per_step"] / 1e3))
