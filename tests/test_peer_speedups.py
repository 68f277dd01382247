"""The peers' bookkeeping speed-ups (experiments.harness.peer_speedups) compute exactly what the tools' own code computes.

Each replacement is run beside the tool's own function on the same random inputs (ties, repeats and
overwrites included), and whole replayed races are compared with the stock tools (`stock=True`).
Skips when the `compare` extra is missing (pip install -e '.[compare]').
"""
from __future__ import annotations

import random

import numpy as np
import pytest

from experiments.harness import peer_speedups as S


def _results(rng: random.Random, n: int) -> list[tuple[int, int, float]]:
    """(trial_id, resource, metric) as ASHA sees them: trials report at rising resources; metrics tie often."""
    out, level = [], {}
    for _ in range(n):
        t = rng.randrange(60)
        level[t] = level.get(t, 0) + rng.choice([1, 1, 2])
        out.append((t, min(level[t] * 100, 2700), rng.choice([rng.random(), round(rng.random(), 1), 8.0] * 30
                                                              + [float("nan")])))
    return out


@pytest.mark.parametrize("seed", range(4))
def test_asha_bracket_ranking_decides_as_syne_tunes(seed):
    pytest.importorskip("syne_tune")
    from syne_tune.optimizer.schedulers.asha import Bracket
    stock_on_result, rng = Bracket.on_result, random.Random(seed)
    seq = _results(rng, 600)
    a, b = Bracket(100, 2700, 3, 0), Bracket(100, 2700, 3, 0)
    want = [stock_on_result(a, t, r, {"bpb": m}) for t, r, m in seq]
    with S.synetune():
        assert Bracket.on_result is not stock_on_result
        got = [b.on_result(t, r, {"bpb": m}) for t, r, m in seq]
    assert Bracket.on_result is stock_on_result                       # restored
    assert got == want and "stop" in {str(d).lower() for d in want}
    assert str(a.rungs) == str(b.rungs)                                  # str: NaN != NaN


def test_multi_fidelity_refit_skipped_only_for_a_searcher_that_ignores_results():
    pytest.importorskip("syne_tune")
    from syne_tune.config_space import choice, randint
    from syne_tune.optimizer.schedulers.searchers.last_value_multi_fidelity_searcher import \
        LastValueMultiFidelitySearcher as LV
    cs = {"family": choice(["a", "b", "c"]), "lr": randint(0, 8), "width": randint(0, 4)}
    runs = {}
    for label, ctx in (("stock", S._swapped([])), ("fast", S.synetune())):
        out = []
        np.random.seed(0)                                                  # its random search draws from numpy's
        with ctx:
            for searcher in ("random_search", "kde"):
                lv = LV(cs, random_seed=3, searcher=searcher)
                rng = random.Random(5)
                for i in range(40):
                    lv.on_trial_result(i, lv.suggest(), metric=rng.random(), resource_level=100)
                    out.append(lv.suggest())
        runs[label] = out
    assert runs["fast"] == runs["stock"] and len(runs["fast"]) == 80


def test_kde_features_are_cached_copies_of_syne_tunes():
    pytest.importorskip("syne_tune")
    from syne_tune.config_space import choice, randint
    from syne_tune.optimizer.schedulers.searchers.kde.kde_searcher import KernelDensityEstimator as KDE
    cs = {"family": choice(["attn", "jepa", "hybrid"]), "lr": randint(0, 8), "depth": randint(0, 3)}
    kde, rng = KDE(cs, random_seed=0), random.Random(1)
    configs = [{"family": rng.choice(["attn", "jepa", "hybrid"]), "lr": rng.randrange(9), "depth": rng.randrange(4)}
               for _ in range(50)]
    want = [KDE._to_feature(kde, c) for c in configs]
    with S.synetune():
        got = [kde._to_feature(c) for c in configs + configs]
        got[0][0] = -1.0                                                  # a caller's change stays its own
        assert kde._to_feature(configs[0])[0] == want[0][0]
    assert all(np.array_equal(g, w) and g.dtype == w.dtype for g, w in zip(got[1:], (want + want)[1:]))


def test_configuration_equality_is_configspaces():
    pytest.importorskip("ConfigSpace")
    import ConfigSpace as CS
    spaces = []
    for seed in (0, 0, 1):
        cs = CS.ConfigurationSpace(seed=seed)
        cs.add(CS.CategoricalHyperparameter("family", ["attn", "jepa", "hybrid"]))
        cs.add(CS.UniformIntegerHyperparameter("lr", 0, 2 if seed == 0 else 3))
        spaces.append(cs)
    configs = [c for cs in spaces for c in cs.sample_configuration(12)]
    configs += [CS.Configuration(spaces[0], values=dict(c)) for c in configs[:6]]   # equal, other objects
    stock = CS.Configuration.__eq__
    want = [[stock(a, b) for b in configs] for a in configs]
    with S.smac():
        got = [[a == b for b in configs] for a in configs]
        assert [c in configs[:6] for c in configs] == [any(stock(c, d) for d in configs[:6]) for c in configs]
    assert got == want and sum(map(sum, want)) > len(configs)


def test_smac_objective_bounds_are_smacs_after_every_add():
    pytest.importorskip("smac")
    import ConfigSpace as CS
    from smac.runhistory.enumerations import StatusType
    from smac.runhistory.runhistory import RunHistory
    cs = CS.ConfigurationSpace(seed=0)
    cs.add(CS.UniformIntegerHyperparameter("x", 0, 30))
    configs = cs.sample_configuration(25)
    rng = random.Random(7)
    ops = []
    for _ in range(300):
        c, budget = rng.randrange(len(configs)), rng.choice([100.0, 300.0, 900.0])
        status = rng.choice([StatusType.RUNNING, StatusType.SUCCESS, StatusType.SUCCESS, StatusType.CRASHED])
        ops.append((c, budget, status, rng.choice([rng.random(), 8.0, 2.5]), rng.random() < 0.2))

    def bounds_after_each() -> list:
        rh, out = RunHistory(), []
        for c, budget, status, cost, force in ops:
            rh.add(configs[c], cost, status=status, budget=budget, seed=0, force_update=force)
            out.append([(type(a), a, type(b), b) for a, b in rh.objective_bounds])
            if len(out) == 150:
                rh.reset()                                              # a reset mid-way is seen
        return out

    want = bounds_after_each()
    with S.smac():
        got = bounds_after_each()
    assert got == want and len({str(w) for w in want}) > 5


@pytest.mark.parametrize("workers", [1, 4])
def test_smac_with_speedups_replays_the_stock_trajectory(workers):
    pytest.importorskip("smac")
    from experiments.harness.peers_smac import run_smac
    from tests.test_peers import TABLE
    for repeat in (0, 1):
        fast = run_smac(TABLE, repeat, workers, 600.0)
        assert fast.completions and fast == run_smac(TABLE, repeat, workers, 600.0, stock=True)


@pytest.mark.parametrize("var_type", ["cccccccu", "uooooooo", "ccoouu"])
def test_kde_pdf_is_statsmodels_bit_for_bit(var_type):
    pytest.importorskip("statsmodels")
    import warnings
    from statsmodels.nonparametric.kernel_density import KDEMultivariate
    stock, rng = KDEMultivariate.pdf, np.random.default_rng(len(var_type))
    for n in (10, 57, 400):
        data = np.column_stack([rng.random(n) if v == "c" else rng.integers(0, 4, n) / 4 for v in var_type])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            kde = KDEMultivariate(data, var_type=var_type, bw="normal_reference")
        points = [[float(rng.random()) if v == "c" or rng.random() < 0.3 else float(rng.integers(0, 4) / 4)
                   for v in var_type] for _ in range(200)] + [list(data[3])]
        want = [stock(kde, p) for p in points]
        with S.kde() as on:
            assert on and KDEMultivariate.pdf is not stock
            got = [kde.pdf(p) for p in points]
            assert np.array_equal(kde.pdf(np.array(points)), stock(kde, np.array(points)))   # many points: stock's
        assert KDEMultivariate.pdf is stock
        assert all(type(g) is type(w) and g.shape == w.shape and g.tobytes() == w.tobytes() for g, w in zip(got, want))


def test_kde_fast_path_stays_off_when_the_probe_fails(monkeypatch):
    pytest.importorskip("statsmodels")
    from statsmodels.nonparametric.kernel_density import KDEMultivariate
    monkeypatch.setattr(S, "_PROBED", {})
    monkeypatch.setattr(S, "_kde_probe", lambda fast, stock: False)
    stock = KDEMultivariate.__dict__["pdf"]
    with S.kde() as on:
        assert on is False and KDEMultivariate.__dict__["pdf"] is stock
