"""scipy's `truncnorm.rvs` for scalar arguments, bit for bit, without its per-call overhead (for HpBandSter's BOHB).

HpBandSter's BOHB config generator draws every continuous coordinate of its 64 candidates with a
scalar call `sps.truncnorm.rvs(a, b, loc=m, scale=bw)`; in scipy 1.17 one such call costs ~0.1 ms,
most of it argument handling and the array-API `logsumexp` of two numbers, and it is ~85 % of a
replayed HpBandSter race. For scalar arguments scipy computes (rv_generic.rvs -> _rvs -> truncnorm._ppf):

    U = random_state.uniform(size=())                  # the global RandomState, one double
    a < 0:  Y =  ndtri_exp(logsumexp([log_ndtr(a),  log(U)    + log_mass(a, b)]))
    else:   Y = -ndtri_exp(logsumexp([log_ndtr(-b), log1p(-U) + log_mass(a, b)]))
    return Y * scale + loc

`rvs` below performs exactly those operations on arrays of the same shapes and dtypes: the same
draw, scipy's own log_ndtr / _log_gauss_mass / ndtri_exp (the (a, b) terms cached: BOHB's KDE
has few distinct (datum, bandwidth) pairs), and logsumexp as scipy's `_logsumexp` computes it for
two reals, minus the array-API dispatch. Anything else (arrays, keywords, a scale <= 0, a >= b,
non-finite values) goes to scipy itself. `exact()` compares the whole path with scipy bit for bit
on probes drawn from a private RNG; `patched` swaps the fast path in only when it passes, so a
scipy whose arithmetic differs gets its own code back. tests/test_peers.py checks the probes and
HpBandSter's trajectories with and without the patch.
"""
from __future__ import annotations

import contextlib
import functools
import math
import types
from typing import Any, Callable, Iterator

import numpy as np
import scipy.special as sc
import scipy.stats as sps
from scipy.stats import _continuous_distns as _cd

from experiments.harness.peer_speedups import _swapped

_TN = sps.truncnorm


def _logsumexp2(x: float, y: float) -> float:
    """scipy.special.logsumexp([x, y], axis=0)[0] for (1,) float64 arrays [x], [y] with x finite, as scipy's
    `_logsumexp` computes it: its exp, log1p and log on arrays of its shapes, (2, 1) and (1, 1); the rest (the
    maximum, the count of maxima m, the sum with zeros, s / 1, sign checks that cannot fire, the final additions) is
    exact in Python floats. A result that is not finite is scipy's own."""
    hi = max(x, y)
    e = np.exp(np.array([[-np.inf if x == hi else x - hi], [-np.inf if y == hi else y - hi]]))   # a - a_max
    m = float((x == hi) + (y == hi))
    s = float(e[0, 0]) + float(e[1, 0])
    s = s if s == 0 else s / m
    out = float(np.log1p(np.array([[s]]))[0, 0]) + float(np.log(np.array([[m]]))[0, 0]) + hi
    return out if math.isfinite(out) else float(sc.logsumexp([np.array([x]), np.array([y])], axis=0)[0])


@functools.lru_cache(maxsize=4096)
def _terms_of(a_hex: str, b_hex: str) -> tuple[float, float] | None:
    a1, b1 = np.array([float.fromhex(a_hex)]), np.array([float.fromhex(b_hex)])
    near, mass = float(_cd._norm_logcdf(a1 if a1[0] < 0 else -b1)[0]), float(_cd._log_gauss_mass(a1, b1)[0])
    return (near, mass) if math.isfinite(near) and math.isfinite(mass) else None


def _terms(a: float, b: float) -> tuple[float, float] | None:
    """(log_ndtr of the near bound, log Gaussian mass of [a, b]) by scipy's own functions on (1,) arrays, cached by
    the bits of (a, b) (a float key would merge -0.0 and 0.0); None when either is not finite."""
    return _terms_of(a.hex(), b.hex())


_FLOAT = (float, np.float64)


def rvs(*args: Any, **kwds: Any) -> Any:
    """`scipy.stats.truncnorm.rvs`, bit for bit; fast for `rvs(a, b, loc=m, scale=s)` with finite floats, a < b, s > 0."""
    if len(args) != 2 or len(kwds) != 2:
        return _TN.rvs(*args, **kwds)
    (a, b), loc, scale = args, kwds.get("loc"), kwds.get("scale")
    if not (type(a) in _FLOAT and type(b) in _FLOAT and type(loc) in _FLOAT and type(scale) in _FLOAT
            and -math.inf < a < b < math.inf and 0 < scale < math.inf and math.isfinite(loc)):
        return _TN.rvs(*args, **kwds)
    terms = _terms(float(a), float(b))
    if terms is None:
        return _TN.rvs(*args, **kwds)
    near, mass = terms
    q = _TN._random_state.uniform(size=()).reshape(1)   # scipy's U, as _ppf sees it: q[case]
    if a < 0:
        y = float(sc.ndtri_exp(np.array([_logsumexp2(near, float(np.log(q)[0]) + mass)]))[0])
    else:
        y = -float(sc.ndtri_exp(np.array([_logsumexp2(near, float(np.log1p(-q)[0]) + mass)]))[0])
    return np.float64(y * float(scale) + float(loc))


def exact(n: int = 2000, seed: int = 20260, *, fn: Callable[..., Any] | None = None) -> bool:
    """True when `fn` (default: `rvs`) equals scipy's truncnorm.rvs bit for bit, type included, on n probes from the
    same global RNG state (BOHB-like and edge-case arguments: data 0 and 1, bandwidths 1e-4..10, float and float64)."""
    fn = rvs if fn is None else fn
    rng = np.random.default_rng(seed)
    ms = np.concatenate([rng.choice([0.0, 1 / 6, 0.25, 0.5, 0.75, 5 / 6, 1.0], n // 2), rng.random(n - n // 2)])
    bws = np.concatenate([10 ** rng.uniform(-4, 1, n - 8), [1e-3, 1e-3, 1e-3, 0.3, 0.3, 3.0, 3.0, 3.0]])
    state = np.random.get_state()
    try:
        for i, (m, bw) in enumerate(zip(ms, bws)):
            m, bw = (float(m), float(bw)) if i % 2 else (np.float64(m), np.float64(bw))
            args, kw = (-m / bw, (1 - m) / bw), {"loc": m, "scale": bw}
            np.random.seed(i)
            want = _TN.rvs(*args, **kw)
            np.random.seed(i)
            got = fn(*args, **kw)
            if type(got) is not type(want) or np.asarray(got).tobytes() != np.asarray(want).tobytes():
                return False
    finally:
        np.random.set_state(state)
    return True


@functools.lru_cache(maxsize=1)
def _exact_once() -> bool:
    return exact()


class _TruncnormFast:
    """scipy's truncnorm with the exact fast `rvs`; every other attribute is scipy's."""

    rvs = staticmethod(rvs)

    def __getattr__(self, name: str) -> Any:
        return getattr(_TN, name)


@contextlib.contextmanager
def patched(module: types.ModuleType, name: str = "sps") -> Iterator[bool]:
    """Within the block, `module.<name>` (its `scipy.stats`) has the fast exact truncnorm.rvs, if `exact()` holds.

    Yields whether the fast path is on; restores the module's attribute afterwards.
    """
    old = getattr(module, name)
    if old is not sps or not _exact_once():
        yield False
        return
    shim = types.ModuleType(sps.__name__)
    shim.__dict__.update(sps.__dict__)
    shim.truncnorm = _TruncnormFast()
    with _swapped([(module, name, shim)]):
        yield True
