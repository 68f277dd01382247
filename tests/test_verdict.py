"""The paired one-sided Wilcoxon test that V3's and V6's falsifiers use: exact where it says exact."""
from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
from scipy.stats import rankdata, wilcoxon

from igla_jax.evidence.verdict import _signed_rank_exact_less, wilcoxon_less


def _brute_force_less(d: "list[float]") -> float:
    """P(R+ <= observed) by listing every sign assignment with itertools (independent of the matrix form)."""
    nz = [v for v in d if v != 0]
    ranks = rankdata(np.abs(nz))
    observed = sum(r for r, v in zip(ranks, nz) if v > 0)
    hits = sum(1 for signs in itertools.product((0, 1), repeat=len(nz))
               if sum(r for r, s in zip(ranks, signs) if s) <= observed)
    return hits / 2 ** len(nz)


def test_hand_computed_tied_cases():
    # d = (-1, -1, 2) plus two zeros: midranks 1.5, 1.5, 3; R+ = 3; 5 of the 8 sign flips have R+ <= 3.
    x, y = [0.0, 0.0, 2.0, 5.0, 7.0], [1.0, 1.0, 0.0, 5.0, 7.0]
    assert wilcoxon_less(x, y) == pytest.approx(5 / 8, abs=0)
    # every difference negative and tied: only the all-negative flip has R+ = 0.
    assert wilcoxon_less([0.0, 0.0, 0.0], [1.0, 1.0, 1.0]) == 1 / 8
    assert wilcoxon_less([1.0, 2.0], [1.0, 2.0]) == 1.0          # all pairs tied


@pytest.mark.parametrize("seed", range(4))
def test_tied_small_samples_are_the_exact_enumeration(seed):
    rng = np.random.default_rng(seed)
    for _ in range(40):
        n = int(rng.integers(2, 12))
        d = rng.integers(-3, 4, size=n).astype(float)            # many ties and zeros
        if not np.any(d):
            continue
        y = rng.integers(0, 10, size=n).astype(float)               # integers: x - y is d exactly
        x = (y + d).tolist()
        want = _brute_force_less(d.tolist())
        assert wilcoxon_less(x, y.tolist()) == pytest.approx(want, rel=0, abs=1e-15)


def test_enumeration_without_ties_is_scipys_exact_distribution():
    rng = np.random.default_rng(7)
    for _ in range(100):
        n = int(rng.integers(2, 14))
        x = rng.normal(size=n)
        y = x + rng.normal(size=n)
        zeros = int(rng.integers(0, 3))
        y[:zeros] = x[:zeros]                                      # zero differences are dropped
        d = x - y
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            want = wilcoxon(x, y, alternative="less", zero_method="wilcox", method="exact").pvalue
        assert _signed_rank_exact_less(d[d != 0].tolist()) == pytest.approx(want, rel=1e-12)


def test_same_input_same_p_value():
    x, y = [0.1, 0.2, 0.2, 0.4, 0.0, 0.3], [0.2, 0.2, 0.3, 0.5, 0.1, 0.3]
    assert wilcoxon_less(x, y) == wilcoxon_less(list(x), list(y))
