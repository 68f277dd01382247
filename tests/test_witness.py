"""The falsification witness (issue 14): one test_falsify_<mode> per mode, calling the code the CLI runs.

Each test runs `experiments.witness.check` on its mode: the violating input must be rejected by the
mode's own rule and the clean twin accepted. Modes whose accelerator is not built (V3, V4, V6, V7)
are strict xfails: the witness reports them "not built" (checked exactly below); once one is built
its test must be made to pass, and the strict xfail fails until the mark is removed.
"""
from __future__ import annotations

import json

import pytest

from experiments import needle_falsify
from experiments import witness as W


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    return W.make_context(tmp_path_factory.mktemp("witness"))


def _caught(ctx, name: str) -> None:
    o = W.check(W.MODE_BY_NAME[name], ctx)
    assert o.status == W.CAUGHT, (o.status, o.input, o.observed, o.twin_input, o.twin_observed)


NOT_BUILT = pytest.mark.xfail(strict=True, raises=AssertionError,
                              reason="accelerator not built: the witness reports 'not built', never caught")

def test_falsify_v1_mup(ctx):
    _caught(ctx, 'v1_mup')

def test_falsify_v2_zero_cost(ctx):
    _caught(ctx, 'v2_zero_cost')

@NOT_BUILT
def test_falsify_v3_bohb(ctx):
    _caught(ctx, 'v3_bohb')

@NOT_BUILT
def test_falsify_v4_surrogate(ctx):
    _caught(ctx, 'v4_surrogate')

def test_falsify_v5_phi_grid(ctx):
    _caught(ctx, 'v5_phi_grid')

def test_falsify_v6_ucb(ctx):
    _caught(ctx, 'v6_ucb')

@NOT_BUILT
def test_falsify_v7_curriculum(ctx):
    _caught(ctx, 'v7_curriculum')

def test_falsify_row_unknown_sha(ctx):
    _caught(ctx, 'row_unknown_sha')

def test_falsify_row_embargoed_sha_full(ctx):
    _caught(ctx, 'row_embargoed_sha_full')

def test_falsify_row_embargoed_sha_abbreviated(ctx):
    _caught(ctx, 'row_embargoed_sha_abbreviated')

def test_falsify_row_step_too_early(ctx):
    _caught(ctx, 'row_step_too_early')

def test_falsify_row_bpb_below_band(ctx):
    _caught(ctx, 'row_bpb_below_band')

def test_falsify_row_bpb_above_band(ctx):
    _caught(ctx, 'row_bpb_above_band')

def test_falsify_row_seed_outside_set(ctx):
    _caught(ctx, 'row_seed_outside_set')

def test_falsify_row_duplicate_seed(ctx):
    _caught(ctx, 'row_duplicate_seed')

def test_falsify_row_dirty_tree(ctx):
    _caught(ctx, 'row_dirty_tree')

def test_falsify_row_test_bpb_missing(ctx):
    _caught(ctx, 'row_test_bpb_missing')

def test_falsify_h1_first_promotion(ctx):
    _caught(ctx, 'h1_first_promotion')

def test_falsify_h2_cheap_promotions(ctx):
    _caught(ctx, 'h2_cheap_promotions')

def test_falsify_h3_reproduce(ctx):
    _caught(ctx, 'h3_reproduce')

def test_falsify_h3_unknown_sha_row(ctx):
    _caught(ctx, 'h3_unknown_sha_row')


def test_every_mode_has_its_test_and_names_it():
    """The registry links each mode to its test, and that test exists in this file."""
    for m in W.MODES:
        assert m.test == f"tests/test_witness.py::test_falsify_{m.name}"
        assert callable(globals().get(f"test_falsify_{m.name}")), m.name


def test_unbuilt_modes_report_not_built(ctx):
    unbuilt = {m.name for m in W.MODES if m.run is None}
    assert unbuilt == {"v3_bohb", "v4_surrogate", "v7_curriculum"}
    for name in unbuilt:
        o = W.check(W.MODE_BY_NAME[name], ctx)
        assert o.status == W.NOT_BUILT and o.observed.startswith("not built"), o


def test_clean_twin_rejected_is_reported(ctx, monkeypatch):
    """A judge that rejects everything proves nothing: the witness says so instead of 'caught'."""
    monkeypatch.setattr(W.V, "winning_seeds", lambda rows, prereg, **kw: W.V.Verdict(
        False, None, None, None, None, None, (f"row 0: {W.V.DIRTY_TREE}: always",), ()))
    assert W.check(W.MODE_BY_NAME["row_dirty_tree"], ctx).status == W.TWIN_REJECTED


def test_cli_table_json_and_exit_code(tmp_path, capsys):
    rc = needle_falsify.main(["--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 1, "exits non-zero while V3, V4, V7 are not built"
    assert "mode" in out.splitlines()[0] and "18/21 modes caught" in out.splitlines()[-1]
    data = json.loads((tmp_path / "needle_falsify.json").read_text())
    assert data["ok"] is False and len(data["modes"]) == len(W.MODES)
    status = {m["mode"]: m["status"] for m in data["modes"]}
    assert {k for k, v in status.items() if v != W.CAUGHT} == {"v3_bohb", "v4_surrogate", "v7_curriculum"}
    assert all(set(m) >= {"mode", "input", "expected", "observed", "rule"} for m in data["modes"])
    assert needle_falsify.main(["--json"]) == 1
    assert json.loads(capsys.readouterr().out)["ok"] is False
