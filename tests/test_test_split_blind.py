"""Nothing that selects reads the test half: poison its bytes and every race decision stays the same."""
from __future__ import annotations

import numpy as np
import pytest

from igla_jax.execution.race_runner import run_race
from igla_jax.training import data

DECISION_FIELDS = ("event_id", "status", "config_id", "seed", "step", "bpb", "decided_by", "score")


def decisions(rows):
    """Every row as the race decided it (test_bpb, timestamps and wall time left out)."""
    return [tuple(r.get(k) for k in DECISION_FIELDS) + ((r.get("extra") or {}).get("trial_id"),) for r in rows]


@pytest.fixture()
def poisoned_test_half(monkeypatch):
    clean = data.corpus()
    a, b = data.split_bounds(clean.size)
    bad = clean.copy()
    bad[b:] = np.random.default_rng(0).integers(0, 256, clean.size - b, dtype=np.uint8)
    assert np.array_equal(bad[:b], clean[:b]) and not np.array_equal(bad[b:], clean[b:])
    data.clear_caches()
    monkeypatch.setattr(data, "corpus", lambda: bad)
    yield
    monkeypatch.undo()
    data.clear_caches()


def run_smoke(out, sampler):
    data.clear_caches()
    if sampler == "phi":  # the V5 sampler and its falsifier read rung results too
        from accelerators.phi_grid import PhiSampler
        from igla_jax.evidence.prereg import load_prereg
        from igla_jax.execution.presets import PRESETS
        return run_race(seed=3, preset="smoke", out=out, sampler=PhiSampler(load_prereg(), space=PRESETS["smoke"].space))
    return run_race(seed=3, preset="smoke", out=out)


@pytest.mark.parametrize("sampler", ["random", "phi"])
def test_falsify_selection_reading_the_test_half_poisoned_test_bytes_change_no_decision(tmp_path, request, sampler):
    clean = run_smoke(tmp_path / "clean", sampler)
    request.getfixturevalue("poisoned_test_half")
    bad = run_smoke(tmp_path / "poisoned", sampler)
    assert bad.summary.verdicts == clean.summary.verdicts
    assert decisions(bad.rows) == decisions(clean.rows)
    assert bad.summary.champion == clean.summary.champion
    # the poison did reach the test half: the victory rows' test BPB moved (random bytes score ~8)
    t_clean = [r["test_bpb"] for r in clean.rows if r["status"] == "confirmed"]
    t_bad = [r["test_bpb"] for r in bad.rows if r["status"] == "confirmed"]
    assert len(t_clean) == len(t_bad) == 3
    assert all(b > c + 0.5 for b, c in zip(t_bad, t_clean)), (t_clean, t_bad)
