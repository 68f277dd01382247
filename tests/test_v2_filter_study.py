"""The V2 filter study (issue 24): does a proxy add anything to parameter count?  Synthetic tables, no training."""
from __future__ import annotations

import numpy as np
import pytest

from experiments.studies import v2_filter_study as S

N = 380


def _table(seed: int = 0):
    """True BPB = a part parameter count explains + a part only 'hidden' knows + noise."""
    rng = np.random.default_rng(seed)
    params = rng.uniform(size=N)
    hidden = rng.standard_normal(N)
    true = 3.0 - 0.3 * params + 0.1 * hidden + 0.01 * rng.standard_normal(N)
    ids = [f"c{i:03d}" for i in range(N)]
    return ids, true, params, hidden, rng


def test_keep_top_breaks_ties_by_config_id():
    assert S.keep_top(["b", "a", "c"], np.array([1.0, 1.0, 0.0]), 1).tolist() == [1]
    assert S.keep_top(["b", "a", "c"], np.array([1.0, 1.0, 2.0]), 2).tolist() == [2, 1]


def test_pool_regret_is_zero_when_the_filter_keeps_each_pools_best():
    ids, true, params, _, _ = _table()
    r = S.pool_regrets(ids, true, {"params": -true, "x": -true}, pool=10, n_keep=2, seed=0)
    assert len(r["params"]) == N // 10 and np.all(r["params"] == 0.0) and np.all(r["params+x"] == 0.0)
    worst = S.pool_regrets(ids, true, {"params": true}, pool=10, n_keep=1, seed=0)["params"]
    assert np.all(worst > 0.0)


def test_a_proxy_that_knows_what_params_miss_adds_and_a_random_one_does_not():
    ids, true, params, hidden, rng = _table()
    scores = {"params": params, "knows": -hidden, "random": rng.uniform(size=N)}
    res = S.compare(ids, true, scores, pool=10, n_keep=2, permutations=20, alpha=0.05 / 7)
    f = res["filters"]
    assert f["params+knows"]["adds"] and f["params+knows"]["mean_pool_regret"] < f["params"]["mean_pool_regret"]
    assert not f["params+random"]["adds"] and f["params+random"]["pass_rate_over_permutations"] <= 0.1
    assert "params+knows" in res["verdict"] and "params+random" not in res["verdict"]


def test_no_proxy_adding_anything_says_v2_stays_off():
    ids, true, params, _, rng = _table(1)
    res = S.compare(ids, true, {"params": params, "noise": rng.uniform(size=N)}, pool=10, n_keep=2,
                    permutations=5, alpha=0.05 / 7)
    assert res["verdict"].endswith("V2 stays off")


def test_controls_are_seeded_and_the_informed_control_carries_the_truth():
    _, true, params, _, _ = _table()
    a, b = S.control_scores(true, params, 3), S.control_scores(true, params, 3)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert np.corrcoef(a["informed"], -true)[0, 1] > 0.5


@pytest.mark.parametrize("pool,keep", [(0, 1), (10, 0), (10, 11), (N + 10, 2)])
def test_bad_pool_sizes_are_refused(pool, keep):
    ids, true, params, _, _ = _table()
    with pytest.raises(ValueError, match="pool_regrets"):
        S.pool_regrets(ids, true, {"params": params}, pool=pool, n_keep=keep, seed=0)
