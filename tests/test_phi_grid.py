"""V5 phi-grid: 128 real configs per family, the trinity identity, and the falsifier."""
from __future__ import annotations

import collections
import math

import pytest

from accelerators.phi_grid import (PHI, PhiSampler, on_phi_grid, phi_grid, phi_values, phi_verdict,
                                   ranked_results, trinity_identity_holds)
from igla_jax.models.config import FAMILIES
from igla_jax.prereg import load_prereg
from igla_jax.race import Race, RaceConfig
from igla_jax.search_space import DEFAULT_SPACE, Config, SearchSpace, sample

PREREG = load_prereg()


@pytest.mark.parametrize("family", FAMILIES)
def test_phi_grid_enumerates_all_128(family):
    grid = phi_grid(family)
    assert len(grid) == 128 and len({c.config_id for c in grid}) == 128
    values = phi_values(family)
    assert all(len(set(v)) == 2 for v in values)
    fields = ("width", "depth", "lr", "beta", "warmup", "wd", "dropout")
    for f, vals in zip(fields, values):
        assert collections.Counter(getattr(c, f) for c in grid) == {vals[0]: 64, vals[1]: 64}
    assert all(on_phi_grid(c) for c in grid)


def test_phi_values_and_rounding():
    attn = dict(zip(("width", "depth", "lr", "beta", "warmup", "wd", "dropout"), phi_values("attn")))
    assert attn["width"] == (64, 192) and all(w % DEFAULT_SPACE.head_dim == 0 for w in attn["width"])
    assert attn["depth"] == (2, 6)
    assert attn["lr"] == (0.00185, 0.00485)          # 3e-3 * PHI^-1, 3e-3 * PHI to 3 significant digits
    assert attn["lr"][1] == float(f"{3e-3 * PHI:.3g}")
    assert attn["beta"] == (0.838, 0.9382)           # 1 - 0.1 * PHI^{+1, -1}
    assert attn["dropout"] == (0.0618, 0.162)
    jepa_beta = phi_values("jepa")[3]
    assert jepa_beta == (0.99353, 0.99753) and all(0 < b < 1 for b in jepa_beta)


def test_trinity_identity_holds():
    assert trinity_identity_holds()
    assert math.isclose(PHI**2 + PHI**-2, 3.0, rel_tol=0, abs_tol=1e-12)
    assert not trinity_identity_holds(tol=-1.0)  # the check can fail


def test_pinned_levers_stay_pinned():
    smoke = SearchSpace(width=(16,), depth=(2,), dropout=(0.0,), ema_beta=(0.99,), head_dim=8)
    assert len(phi_grid("attn", smoke)) == 2**4 and len(phi_grid("jepa", smoke)) == 2**3
    assert {c.width for c in phi_grid("hybrid", smoke)} == {16}


def _rows(configs_bpb, step=900, seed=42):
    return [{"config": c.to_dict(), "config_id": c.config_id, "step": step, "bpb": b, "seed": seed,
             "status": "trained"} for c, b in configs_bpb]


def test_falsify_phi_grid_excludes_optimum():
    on = phi_grid("attn")[:18]
    off = [c for c in sample(1, "attn", 40) if not on_phi_grid(c)][:2]
    # 20 configs -> top 10 % = 2: an off-grid config is the best -> V5 disabled
    bad = _rows([(off[0], 1.90)] + [(c, 2.0 + 0.01 * i) for i, c in enumerate(on)] + [(off[1], 2.9)])
    v = phi_verdict(bad, PREREG)
    assert not v.enabled and v.statistic == 0.5 and v.threshold == 1.0 and off[0].config_id in v.reason
    # same configs, but the off-grid ones rank below the top 10 % -> V5 stays enabled
    good = _rows([(off[0], 2.5)] + [(c, 2.0 + 0.01 * i) for i, c in enumerate(on)] + [(off[1], 2.9)])
    v = phi_verdict(good, PREREG)
    assert v.enabled and v.statistic == 1.0


def test_ranking_uses_highest_step_and_mean_over_seeds():
    a, b, c = phi_grid("attn")[:3]
    rows = (_rows([(a, 2.0)], step=300) + _rows([(b, 2.5)], step=900) + _rows([(c, 2.4)], step=900)
            + _rows([(c, 2.8)], step=900, seed=43)
            + [{"config": a.to_dict(), "step": 900, "bpb": None, "seed": 42, "status": "diverged"}])
    ranked = ranked_results(rows)
    assert [(x[0], x[1]) for x in ranked] == [(b, 900), (c, 900), (a, 300)]
    assert ranked[1][2] == pytest.approx(2.6)  # mean of the two seeds, not the minimum
    assert phi_verdict([], PREREG).enabled


def _quality_off_grid_best(cfg: Config) -> float:
    """dropout 0 (never on the phi-grid) is far better: the phi claim is false here."""
    return 2.0 + 3.0 * cfg.dropout + abs(math.log(cfg.lr / 3e-3)) * 0.1


def test_phi_sampler_restores_full_grid_when_falsified():
    from test_race import drive  # the fake sequential executor of the race tests
    race = Race(RaceConfig(rungs=(10, 30), eta=3, seed=4, max_trials=30, victory_seeds=(4,), reproduce_tol=1e-4,
                           confirm=False), sampler=PhiSampler(PREREG, explore=0.3))
    state, _, _ = drive(race, lambda c, s, seed=4: _quality_off_grid_best(c) + 10.0 / s)
    on = [on_phi_grid(t.config) for t in state.trials]
    (name, verdict), = state.verdicts
    assert name == "phi_grid" and not verdict.enabled and "off the phi-grid" in verdict.reason
    assert all(on[:4]) and sum(on[:10]) >= 6  # it started (mostly) on the phi-grid
    assert state.sampler_state.disabled
    # after falsification the sampler draws from the full grid only: almost never on the phi-grid
    later = on[-10:]
    assert sum(later) <= 2


def test_phi_sampler_stays_on_grid_when_the_claim_holds():
    from test_race import drive
    race = Race(RaceConfig(rungs=(10, 30), eta=3, seed=3, max_trials=20, victory_seeds=(3,), reproduce_tol=1e-4,
                           confirm=False), sampler=PhiSampler(PREREG, explore=0.25))
    state, _, _ = drive(race, lambda c, s, seed=3: (1.5 if on_phi_grid(c) else 3.0) + 10.0 / s)
    (_, verdict), = state.verdicts
    assert verdict.enabled and not state.sampler_state.disabled
    on = [on_phi_grid(t.config) for t in state.trials]
    assert 0 < on.count(False) < on.count(True)  # explores the full grid, mostly phi


def test_falsifier_waits_for_enough_results():
    rows = _rows([(c, 2.0) for c in sample(5, "attn", 9) if not on_phi_grid(c)])
    v = phi_verdict(rows, PREREG)
    assert v.enabled and v.threshold == 10 and "needs 10" in v.reason
