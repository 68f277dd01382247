"""The pre-registration file loads, and every malformed field is rejected naming file and field."""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

from igla_jax.evidence import prereg as P
from igla_jax.evidence.prereg import Prereg, PreregError, load_prereg, rung_schedule

REPO_FILE = Path(__file__).resolve().parent.parent / "assertions" / "preregistration.json"


def _raw() -> dict:
    return json.loads(REPO_FILE.read_text())


def _write(tmp_path: Path, data: object, name: str = "prereg.json") -> Path:
    p = tmp_path / name
    p.write_text(data if isinstance(data, str) else json.dumps(data))
    return p


def test_repo_file_loads_with_issue_values():
    # Golden values from issue 4; update only together with a dated note in the file's "notes".
    p = load_prereg()
    assert isinstance(p, Prereg)
    assert p.rungs == (1000, 3000, 9000, 27000) and p.eta == 3
    assert (p.target_bpb, p.mu0, p.effect_size, p.alpha) == (1.50, 1.55, 0.05, 0.01)
    assert p.seeds == (42, 43, 44) and p.bonferroni_n == 7 and p.min_victory_step == 4000
    assert p.bpb_band == (0.85, 2.30)
    assert p.null_sim_draws >= 10_000
    assert "bits per byte" in p.units["bpb"]
    assert set(p.notes) == set(P.CONSTANT_FIELDS)
    assert p.alpha_per_arm == pytest.approx(0.01 / 7)


def test_prereg_is_frozen():
    p = load_prereg()
    with pytest.raises(AttributeError):
        p.alpha = 0.5  # type: ignore[misc]


def test_rungs_geometric():
    p = load_prereg()
    assert p.rungs == rung_schedule(p.rungs[0], p.eta, len(p.rungs))
    assert all(b == a * p.eta for a, b in zip(p.rungs, p.rungs[1:]))
    assert rung_schedule(2, 3, 3) == (2, 6, 18)
    for bad in ((0, 3, 2), (1, 1, 2), (1, 3, 0), (1.5, 3, 2)):
        with pytest.raises(ValueError):
            rung_schedule(*bad)


def test_env_var_overrides_default(tmp_path, monkeypatch):
    data = _raw()
    data["alpha"] = 0.02
    monkeypatch.setenv(P.PREREG_ENV, str(_write(tmp_path, data)))
    assert load_prereg().alpha == 0.02
    monkeypatch.delenv(P.PREREG_ENV)
    assert load_prereg().alpha == 0.01


def _mutations() -> list[tuple[str, str, object]]:
    """(id, field the error must name, mutation) for one malformed field each."""
    return [
        ("missing", "alpha", lambda d: d.pop("alpha")),
        ("unknown", "alhpa", lambda d: d.__setitem__("alhpa", 0.01)),
        ("rungs_not_geometric", "rungs", lambda d: d.__setitem__("rungs", [1000, 3000, 9000, 20000])),
        ("rungs_decreasing", "rungs", lambda d: d.__setitem__("rungs", [27000, 9000, 3000, 1000])),
        ("rungs_not_list", "rungs", lambda d: d.__setitem__("rungs", 1000)),
        ("rung_float", "rungs[1]", lambda d: d.__setitem__("rungs", [1000, 3000.5])),
        ("eta_one", "eta", lambda d: d.__setitem__("eta", 1)),
        ("eta_string", "eta", lambda d: d.__setitem__("eta", "3")),
        ("alpha_one", "alpha", lambda d: d.__setitem__("alpha", 1.0)),
        ("alpha_zero", "alpha", lambda d: d.__setitem__("alpha", 0)),
        ("alpha_bool", "alpha", lambda d: d.__setitem__("alpha", True)),
        ("band_reversed", "bpb_band", lambda d: d.__setitem__("bpb_band", [2.3, 0.85])),
        ("band_equal", "bpb_band", lambda d: d.__setitem__("bpb_band", [1.0, 1.0])),
        ("band_len", "bpb_band", lambda d: d.__setitem__("bpb_band", [0.85])),
        ("fraction_one", "holdout_fraction", lambda d: d.__setitem__("holdout_fraction", 1.0)),
        ("fraction_neg", "proxy_drop_fraction", lambda d: d.__setitem__("proxy_drop_fraction", -0.1)),
        ("fraction_pct", "surrogate_prune_fraction", lambda d: d.__setitem__("surrogate_prune_fraction", 60)),
        ("seeds_dup", "seeds", lambda d: d.__setitem__("seeds", [42, 42, 44])),
        ("seeds_one", "seeds", lambda d: d.__setitem__("seeds", [42])),
        ("seeds_neg", "seeds[0]", lambda d: d.__setitem__("seeds", [-1, 43, 44])),
        ("target_outside_band", "target_bpb", lambda d: d.__setitem__("target_bpb", 3.0)),
        ("mu0_negative", "mu0", lambda d: d.__setitem__("mu0", -1.55)),
        ("effect_zero", "effect_size", lambda d: d.__setitem__("effect_size", 0.0)),
        ("effect_huge", "effect_size", lambda d: d.__setitem__("effect_size", 1.0)),
        ("min_step_zero", "min_victory_step", lambda d: d.__setitem__("min_victory_step", 0)),
        ("bonferroni_float", "bonferroni_n", lambda d: d.__setitem__("bonferroni_n", 7.0)),
        ("draws_small", "null_sim_draws", lambda d: d.__setitem__("null_sim_draws", 100)),
        ("tol_negative", "reproduce_tol", lambda d: d.__setitem__("reproduce_tol", -1e-4)),
        ("note_missing", "notes.alpha", lambda d: d["notes"].pop("alpha")),
        ("note_unknown", "notes.beta", lambda d: d["notes"].__setitem__("beta", "x")),
        ("notes_missing", "notes", lambda d: d.pop("notes")),
        ("units_no_bpb", "units.bpb", lambda d: d["units"].pop("bpb")),
    ]


@pytest.mark.parametrize("case", _mutations(), ids=lambda c: c[0])
def test_falsify_malformed_field_rejected(tmp_path, case):
    _, field, mutate = case
    assert load_prereg(_write(tmp_path, _raw(), "good.json")).alpha == 0.01  # the valid file is accepted
    data = copy.deepcopy(_raw())
    mutate(data)
    path = _write(tmp_path, data)
    with pytest.raises(PreregError) as e:
        load_prereg(path)
    msg = str(e.value)
    assert str(path) in msg and f"field '{field}'" in msg, msg


def test_nan_literal_and_bad_json_rejected(tmp_path):
    text = REPO_FILE.read_text().replace('"alpha": 0.01', '"alpha": NaN')
    with pytest.raises(PreregError, match="not valid JSON"):
        load_prereg(_write(tmp_path, text))
    with pytest.raises(PreregError, match="not valid JSON"):
        load_prereg(_write(tmp_path, "{", "broken.json"))
    with pytest.raises(PreregError, match="top level"):
        load_prereg(_write(tmp_path, [1, 2], "list.json"))


def test_missing_file_names_path(tmp_path):
    with pytest.raises(PreregError, match="nope.json"):
        load_prereg(tmp_path / "nope.json")


def test_amendments_are_versioned_dated_and_keep_v1_constants():
    # golden: pre-registration v7 (v5: V3, V4, V7 constants; v6: V6's round-robin baseline; v7: the anytime
    # race's reserve and V5's uncapped judging point); update only with a new dated amendment
    p = load_prereg()
    assert p.version == 13 and p.date == "2026-12-08" and len(p.amendments) == 13
    assert [a["version"] for a in p.amendments] == list(range(1, 14)) and "selection" in p.amendments[1]["why"]
    assert p.harness_regret_cap == 1.0 and "anytime regret" in p.amendments[7]["what"]
    assert p.confirm_reserve_margin == 1.25 and "anytime" in p.amendments[6]["what"]
    assert "--plan-seed 1" in p.amendments[8]["what"] and "read once" in p.amendments[8]["what"]
    assert p.bohb_regret_at_budget == 0.1 and "curves_tenth_plan1.jsonl" in p.amendments[9]["what"]
    assert "v2_filter_study" in p.amendments[12]["what"] and "Declared after seeing" in p.amendments[12]["why"]
    assert (p.phi_explore_share, p.phi_judge_fraction, p.lr_transfer_max_shift, p.filter_score_pool,
            p.bootstrap_level) == (0.5, 0.55, 1, 10, 0.95)
    assert p.phi_top_fraction == 0.1 and p.surrogate_prune_fraction == 0.6  # v1 constants kept


@pytest.mark.parametrize("mutate, field", [
    (lambda d: d.update(version=14), "amendments"),
    (lambda d: d.update(date="26/11/2026"), "date"),
    (lambda d: d["amendments"][1].update(why=""), "amendments[1].why"),
    (lambda d: d["amendments"][1].update(version=14), "amendments[1].version"),
    (lambda d: d["amendments"][-1].update(date="2026-12-09"), "date"),
    (lambda d: d.pop("amendments"), "amendments"),
])
def test_amendment_record_is_validated(tmp_path, mutate, field):
    d = _raw()
    mutate(d)
    with pytest.raises(PreregError, match=f"field '{re.escape(field)}'"):
        load_prereg(_write(tmp_path, d))


def test_race_reads_the_filter_pool_from_the_prereg():
    import dataclasses
    from igla_jax.execution.presets import PRESETS
    p = dataclasses.replace(load_prereg(), filter_score_pool=7)
    assert PRESETS["quick"].race_config(p, 1).score_pool == 7


def test_one_status_vocabulary():
    from accelerators import phi_grid
    from igla_jax.evidence import ledger_row, victory
    from igla_jax.execution import rows
    assert rows.RESULT_STATUSES is ledger_row.RESULT_STATUSES
    assert victory.VICTORY_STATUSES is ledger_row.VICTORY_STATUSES == frozenset({"confirmed"})
    assert phi_grid.RESULT_STATUSES is ledger_row.RESULT_STATUSES
