"""Search space: 3^7 configs per family, stable ids, deterministic sampling, conversion to core configs."""
from __future__ import annotations

import dataclasses

import pytest

from igla_jax.search.search_space import (DEFAULT_SPACE, JEPA_BETA1, LEVER_IDS, LEVER_TABLE, Config, SearchSpace,
                                          SearchSpaceError, config_from_dict, full_grid, sample)
from igla_jax.training.models.config import FAMILIES


@pytest.mark.parametrize("family", FAMILIES)
def test_full_grid_has_2187_distinct_configs(family):
    grid = full_grid(family)
    assert len(grid) == 3**7 == 2187
    assert len({c.config_id for c in grid}) == 2187
    assert all(c.family == family and DEFAULT_SPACE.contains(c) for c in grid)
    assert [DEFAULT_SPACE.config_at(family, i) for i in (0, 1, 2186)] == [grid[0], grid[1], grid[2186]]
    # every value of every lever is used equally often (729 = 2187 / 3)
    for f, vals in zip(("width", "depth", "lr", "beta", "warmup", "wd", "dropout"), DEFAULT_SPACE.values(family)):
        assert {v: sum(getattr(c, f) == v for c in grid) for v in vals} == {v: 729 for v in vals}


def test_config_id_is_stable_and_canonical():
    c = Config("hybrid", 64, 2, 1e-3, 0.8, 0.0, 0.05, 0.2)
    # golden value: update only if the canonical form (field names, JSON rules) changes on purpose
    assert c.canonical_json() == ('{"beta":0.8,"depth":2,"dropout":0.2,"family":"hybrid","lr":0.001,'
                                  '"warmup":0.0,"wd":0.05,"width":64}')
    assert c.config_id == "788cf61c1d87"
    assert Config("hybrid", 64, 2, 0.001, 0.8, 0, 0.05, 0.2).config_id == c.config_id  # 0 == 0.0
    assert dataclasses.replace(c, lr=1.0e-3 * 3).config_id != c.config_id


def test_config_validation_names_the_field():
    with pytest.raises(SearchSpaceError, match=r"Config.family='mlp'"):
        Config("mlp", 64, 2, 1e-3, 0.8, 0.0, 0.0, 0.0)
    with pytest.raises(SearchSpaceError, match=r"Config.beta=1.0"):
        Config("attn", 64, 2, 1e-3, 1.0, 0.0, 0.0, 0.0)
    with pytest.raises(SearchSpaceError, match=r"Config.width=0"):
        Config("attn", 0, 2, 1e-3, 0.9, 0.0, 0.0, 0.0)
    with pytest.raises(SearchSpaceError, match="multiples of head_dim=32"):
        SearchSpace(width=(48, 64, 96))
    with pytest.raises(SearchSpaceError, match="three distinct increasing"):
        SearchSpace(lr=(1e-2, 1e-3, 3e-3))


def test_config_from_dict_round_trip_and_errors():
    c = full_grid("jepa")[100]
    assert config_from_dict(c.to_dict()) == c
    with pytest.raises(SearchSpaceError, match="ledger row 7"):
        config_from_dict({"family": "attn"}, source="ledger row 7")
    with pytest.raises(SearchSpaceError, match="ledger row 8: Config.dropout"):
        config_from_dict({**c.to_dict(), "dropout": 1.5}, source="ledger row 8")


def test_sample_is_deterministic_and_without_replacement():
    a = sample(42, "attn", 50)
    assert a == sample(42, "attn", 50)
    assert a != sample(43, "attn", 50)
    assert len({c.config_id for c in a}) == 50
    assert sample(42, "jepa", 50) != a and all(c.family == "jepa" for c in sample(42, "jepa", 5))
    assert len(sample(0, "hybrid", 2187)) == 2187
    with pytest.raises(SearchSpaceError, match="2188"):
        sample(0, "hybrid", 2188)


def test_conversion_to_core_configs():
    attn = Config("attn", 128, 4, 3e-3, 0.95, 0.02, 0.05, 0.1)
    mc = attn.to_model_config(context=64)
    assert (mc.family, mc.width, mc.depth, mc.context, mc.head_dim, mc.dropout) == ("attn", 128, 4, 64, 32, 0.1)
    tc = attn.to_train_config(seed=43, total_steps=900, batch=12)
    assert (tc.lr, tc.beta1, tc.weight_decay, tc.warmup_frac, tc.total_steps, tc.batch, tc.seed) == \
        (3e-3, 0.95, 0.05, 0.02, 900, 12, 43)
    jepa = Config("jepa", 64, 2, 1e-3, 0.999, 0.0, 0.0, 0.0)
    assert jepa.to_model_config(context=32).ema_beta == 0.999
    assert jepa.to_train_config(seed=42, total_steps=10, batch=4).beta1 == JEPA_BETA1
    assert attn.to_model_config(context=64).ema_beta != 0.95  # beta1 never leaks into the EMA


def test_lever_table_documents_seven_levers():
    lines = [l for l in LEVER_TABLE.splitlines() if l.startswith("| G")]
    assert [l.split("|")[1].strip() for l in lines] == list(LEVER_IDS)


def test_pinned_levers_shrink_the_space():
    space = SearchSpace(width=(16,), depth=(2,), dropout=(0.0,), ema_beta=(0.99,), head_dim=8)
    assert space.size("attn") == 3**4 and space.size("jepa") == 3**3
    assert len({c.config_id for c in full_grid("jepa", space)}) == 27
