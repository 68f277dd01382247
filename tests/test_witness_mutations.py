"""Mutation tests for the witness (issue 14): weaken the rule a mode exercises and the witness must fail.

Each mutation is a plausible bug in the judge (a bound raised to infinity via dataclasses.replace on
the judges' pre-registration, a check dropped by monkeypatching the judging module); the mode's
inputs stay those built from the real pre-registration. The witness must then report the mode as
not caught. Unbuilt modes (V3, V4, V6, V7) have no rule yet to weaken; their witness already fails.
"""
from __future__ import annotations

import dataclasses
import math

import pytest

import accelerators.phi_grid as phi_grid
import accelerators.ucb as ucb
import igla_jax.evidence.victory as V
from experiments import witness as W
from igla_jax.evidence.prereg import load_prereg

INF = math.inf


def _replace(**kw):
    """The judges' pre-registration with some bound weakened."""
    def mutate(monkeypatch, pr):
        return dataclasses.replace(pr, **kw)
    return mutate


def _bound(name, value):
    def mutate(monkeypatch, pr):
        return dataclasses.replace(pr, **{name: value(pr)})
    return mutate


def _drop_row_rule(rule):
    """victory._row_reasons without the named rule (the check deleted)."""
    def mutate(monkeypatch, pr):
        orig = V._row_reasons
        monkeypatch.setattr(V, "_row_reasons", lambda *a, **k: [r for r in orig(*a, **k) if not r.startswith(rule)])
        return pr
    return mutate


def _no_embargo(monkeypatch, pr):
    monkeypatch.setattr(V, "resolve_embargo", lambda entries, resolve, source="embargo": frozenset())
    return pr


def _literal_embargo(monkeypatch, pr):
    """The row's sha compared with the embargo as written, not resolved to its full id: abbreviations slip through."""
    orig = V._row_reasons

    def reasons(row, prereg, resolve, embargo, require_clean):
        out = orig(row, prereg, resolve, frozenset(), require_clean)
        return out + ([f"{V.EMBARGOED_SHA}: sha {row['sha']!r} is listed"] if row["sha"] in embargo else [])
    monkeypatch.setattr(V, "_row_reasons", reasons)
    return pr


def _dedupe_seeds(monkeypatch, pr):
    """The duplicate-seed check replaced by silently keeping the last row of each seed."""
    orig = V.winning_seeds

    def judged(rows, prereg, **kw):
        last = {}
        for r in rows:
            last[r["seed"]] = r
        return orig(list(last.values()), prereg, **kw)
    monkeypatch.setattr(V, "winning_seeds", judged)
    return pr


def _validation_fallback(monkeypatch, pr):
    """A row without test_bpb judged on its validation bpb (the leak pre-registration v2 closed)."""
    orig = V.winning_seeds
    monkeypatch.setattr(V, "winning_seeds", lambda rows, prereg, **kw: orig(
        [dict(r, test_bpb=r.get("test_bpb", r.get("bpb"))) for r in rows], prereg, **kw))
    return pr


def _phi_always_enabled(monkeypatch, pr):
    orig = phi_grid.phi_verdict
    monkeypatch.setattr(phi_grid, "phi_verdict",
                        lambda *a, **k: dataclasses.replace(orig(*a, **k), enabled=True))
    return pr


def _any_sha_resolves(monkeypatch, pr):
    """A resolver that trusts any 40-hex sha as a commit of the repository."""
    monkeypatch.setattr(V, "git_resolver", lambda repo: (lambda sha: sha if len(sha) == 40 else None))
    return pr


def _ucb_always_enabled(monkeypatch, pr):
    orig = ucb.ucb_verdict
    monkeypatch.setattr(ucb, "ucb_verdict", lambda *a, **k: dataclasses.replace(orig(*a, **k), enabled=True))
    return pr


def _bohb_always_enabled(monkeypatch, pr):
    import accelerators.bohb as bohb
    orig = bohb.bohb_verdict
    monkeypatch.setattr(bohb, "bohb_verdict", lambda *a, **k: dataclasses.replace(orig(*a, **k), enabled=True))
    return pr


def _surrogate_mae_unbounded(monkeypatch, pr):
    return dataclasses.replace(pr, surrogate_mae_max=INF)


def _curriculum_variance_unchecked(monkeypatch, pr):
    import accelerators.curriculum as cur
    monkeypatch.setattr(cur, "brown_forsythe_greater", lambda *a, **k: (1.0, 0.0))
    return pr


MUTATIONS = {
    "v1_mup": _replace(mup_slope_max=INF),
    "v2_zero_cost": _replace(proxy_rho_min=-INF),
    "v5_phi_grid": _phi_always_enabled,
    "v3_bohb": _bohb_always_enabled,
    "v4_surrogate": _surrogate_mae_unbounded,
    "v6_ucb": _ucb_always_enabled,
    "v7_curriculum": _curriculum_variance_unchecked,
    "row_unknown_sha": _drop_row_rule(V.UNKNOWN_SHA),
    "row_embargoed_sha_full": _no_embargo,
    "row_embargoed_sha_abbreviated": _literal_embargo,
    "row_step_too_early": _replace(min_victory_step=0),
    "row_bpb_below_band": _bound("bpb_band", lambda pr: (-INF, pr.bpb_band[1])),
    "row_bpb_above_band": _bound("bpb_band", lambda pr: (pr.bpb_band[0], INF)),
    "row_seed_outside_set": _drop_row_rule(V.SEED_OUTSIDE_SET),
    "row_duplicate_seed": _dedupe_seeds,
    "row_dirty_tree": _drop_row_rule(V.DIRTY_TREE),
    "row_test_bpb_missing": _validation_fallback,
    "h1_first_promotion": _replace(harness_first_promotion_ratio_max=INF),
    "h2_cheap_promotions": _replace(cheap_promotion_fail_max=INF),
    "h3_reproduce": _replace(reproduce_tol=INF),
    "h3_unknown_sha_row": _any_sha_resolves,
}


def test_every_built_mode_has_a_mutation():
    assert set(MUTATIONS) == {m.name for m in W.MODES if m.run is not None}


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_weakened_rule_makes_the_witness_fail(name, monkeypatch, tmp_path):
    pr = load_prereg()
    ctx = W.make_context(tmp_path, prereg=pr, judge_prereg=MUTATIONS[name](monkeypatch, pr))
    o = W.check(W.MODE_BY_NAME[name], ctx)
    assert o.status == W.NOT_CAUGHT, (f"{name}: weakening its rule did not make the witness fail", o)


def test_literal_embargo_still_catches_the_full_sha(monkeypatch, tmp_path):
    """The abbreviated mode is what detects an unresolved embargo: the full-sha mode alone would not."""
    pr = load_prereg()
    ctx = W.make_context(tmp_path, judge_prereg=_literal_embargo(monkeypatch, pr))
    assert W.check(W.MODE_BY_NAME["row_embargoed_sha_full"], ctx).status == W.CAUGHT


def test_unmutated_witness_catches_every_built_mode(tmp_path):
    """The control arm: the same call without a mutation catches every built mode."""
    ctx = W.make_context(tmp_path)
    assert {n: W.check(W.MODE_BY_NAME[n], ctx).status for n in MUTATIONS} == {n: W.CAUGHT for n in MUTATIONS}
