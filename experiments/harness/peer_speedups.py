"""Exact speed-ups inside the peers: the same decisions, bit for bit, without their quadratic loops.

At 16 simulated workers a replayed peer race makes thousands of evaluations, and some of the tools'
bookkeeping costs time proportional to everything seen so far on every step (so a race costs the
square of its length). None of that bookkeeping is the tools' search algorithm; each function here
computes exactly what the tool's own code computes, from the same inputs, faster. The one piece of
the algorithms' own arithmetic touched, statsmodels' KDE pdf at one point, is recomputed with the same
operations and checked bit for bit before use. Each is switched in only for the length of a run
(`synetune()`, `smac()`, `kde()`: context managers that restore the tools' own attributes), and
tests/test_peer_speedups.py checks each against the tool's own code on random inputs and whole
replayed races against the stock tool (`stock=True` in the adapters).

Syne Tune 0.16:
- `asha.Bracket.on_result` ranks a new result among every result recorded at its rung by building
  and sorting the whole list each time. The rank it compares with 1 / reduction_factor is (number of
  recorded values strictly below the new one) / (recorded + 1): `searchsorted(sorted(p), p)[-1] /
  len(p)`. Here a sorted list per rung is kept and `bisect_left` gives the same count.
- `LastValueMultiFidelitySearcher.fit_model` builds a fresh searcher on every suggestion (drawing its
  seed from the searcher's RandomState) and replays every trial into it with `on_trial_complete`. For
  a searcher whose `on_trial_complete` is the base class's no-op (ASHA's random search) the replay
  does nothing; here it is skipped, the seed still drawn.
- `KernelDensityEstimator._to_feature` (BOHB's KDE searcher) re-encodes every trial's config on every
  refit; here each (config space, config) is encoded once and a copy of the same array handed out.

statsmodels 0.14 (the KDEs of HpBandSter's BOHB and Syne Tune's BOHB):
- `KDEMultivariate.pdf` at one point re-derives its per-KDE constants on every call (the number of levels
  of each unordered column by np.unique, the product of the continuous bandwidths) and calls one kernel
  per column. Here the constants are computed once per KDE, and the Gaussian kernel runs on all
  continuous columns at once with the same elementwise operations; the row products and the sum are
  statsmodels' own reductions on the same array. This one rests on numpy's elementwise arithmetic
  giving each element the same bits in a (n, k) array as in a (n,) one, so `kde()` switches it in only
  after a probe on random KDEs matches statsmodels bit for bit.

SMAC3 2.4 / ConfigSpace 1.2:
- `Configuration.__eq__` compares `dict(self) == dict(other)` (and the spaces), rebuilding both dicts
  from the vectors on every call; SMAC's config selector tests `config not in processed` against a
  list of every config seen. Here each configuration's dict is built once per vector (cached against
  the vector's bytes, so a changed vector is seen) and the comparison is the same.
- `RunHistory._update_objective_bounds` recomputes the minimum and maximum cost over every trial after
  each `add`. Min and max are exact in any order; here they are kept as trials are added, and
  recomputed by SMAC's own code whenever an entry that counted is replaced or removed.
"""
from __future__ import annotations

import bisect
import contextlib
import math
import warnings
from collections.abc import Iterable
from typing import Any, Iterator


@contextlib.contextmanager
def _swapped(pairs: list[tuple[Any, str, Any]]) -> Iterator[None]:
    """Set each (owner, attribute, value) for the block; the owners' own attributes come back afterwards."""
    old = [(o, n, o.__dict__[n]) for o, n, _ in pairs]
    try:
        for o, n, v in pairs:
            setattr(o, n, v)
        yield
    finally:
        for o, n, v in old:
            setattr(o, n, v)


# ---------------------------------------------------------------- Syne Tune
def _bracket_on_result(stock: Any) -> Any:
    from syne_tune.optimizer.scheduler import SchedulerDecision

    def on_result(self: Any, trial_id: int, cur_iter: int, metrics: dict | None) -> str:
        if self.priority is not None or metrics is None or len(metrics) != 1:
            return stock(self, trial_id, cur_iter, metrics)      # multi-objective: Syne Tune's own
        sorted_of = self.__dict__.setdefault("_igla_sorted", {})
        action = SchedulerDecision.CONTINUE
        for milestone, recorded in self.rungs:
            if cur_iter < milestone or trial_id in recorded:
                continue
            (value,) = metrics.values()
            value = float(value)
            if math.isnan(value):                                  # NaN sorts inconsistently: Syne Tune's own
                return stock(self, trial_id, cur_iter, metrics)
            ranked = sorted_of.get(milestone)
            if ranked is None or len(ranked) != len(recorded):   # first use, or recorded changed behind our back
                ranked = sorted(float(v) for x in recorded.values() for v in x.values())
                if any(math.isnan(v) for v in ranked):
                    return stock(self, trial_id, cur_iter, metrics)
                sorted_of[milestone] = ranked
            if recorded and bisect.bisect_left(ranked, value) / (len(ranked) + 1) > 1 / self.rf:
                action = SchedulerDecision.STOP
            bisect.insort(ranked, value)
            recorded[trial_id] = metrics
            break
        return action

    return on_result


def _fit_model(stock: Any) -> Any:
    from syne_tune.optimizer.schedulers.searchers.single_objective_searcher import SingleObjectiveBaseSearcher
    noop = SingleObjectiveBaseSearcher.on_trial_complete

    def fit_model(self: Any) -> None:
        if getattr(self.searcher_cls, "on_trial_complete", None) is not noop:
            return stock(self)
        self.searcher = self.searcher_cls(config_space=self.config_space,
                                          random_seed=self.random_state.randint(0, 2**31 - 1),
                                          points_to_evaluate=None, **self.searcher_kwargs)

    return fit_model


def _to_feature(stock: Any, cache: dict) -> Any:
    def to_feature(self: Any, config: dict) -> Any:
        try:
            key = (id(self.config_space), tuple((k, type(v), v) for k, v in config.items()))
            hit = cache.get(key)
        except TypeError:                                           # an unhashable value: Syne Tune's own
            return stock(self, config)
        if hit is None or hit[0] is not self.config_space:
            hit = cache[key] = (self.config_space, stock(self, config))
        return hit[1].copy()

    return to_feature


@contextlib.contextmanager
def synetune() -> Iterator[None]:
    """Syne Tune's ASHA bracket ranking, multi-fidelity refit and KDE features without their quadratic loops."""
    from syne_tune.optimizer.schedulers.asha import Bracket
    from syne_tune.optimizer.schedulers.searchers.kde.kde_searcher import KernelDensityEstimator
    from syne_tune.optimizer.schedulers.searchers.last_value_multi_fidelity_searcher import \
        LastValueMultiFidelitySearcher as LV
    cache: dict = {}
    with kde(), _swapped([(Bracket, "on_result", _bracket_on_result(Bracket.__dict__["on_result"])),
                   (LV, "fit_model", _fit_model(LV.__dict__["fit_model"])),
                   (KernelDensityEstimator, "_to_feature",
                    _to_feature(KernelDensityEstimator.__dict__["_to_feature"], cache))]):
        yield


# ---------------------------------------------------------------- SMAC3 / ConfigSpace
def _values_of(config: Any) -> dict:
    """dict(config), built once per vector."""
    key = config._vector.tobytes()
    hit = config.__dict__.get("_igla_values")
    if hit is None or hit[0] != key:
        hit = config.__dict__["_igla_values"] = (key, dict(config))
    return hit[1]


def _config_eq(self: Any, other: Any) -> bool:
    if isinstance(other, self.__class__):
        return _values_of(self) == _values_of(other) and self.config_space == other.config_space
    return NotImplemented


def _objective_bounds(stock_add: Any, stock_bounds: Any) -> tuple[Any, Any]:
    import numpy as np
    from smac.runhistory.enumerations import StatusType

    def add(self: Any, k: Any, v: Any, status: Any) -> None:
        self.__dict__["_igla_pending"] = (self._data.get(k), v)   # the entry it replaces (None: a new one), the new
        try:
            stock_add(self, k, v, status)
        finally:
            self.__dict__.pop("_igla_pending", None)

    def full(self: Any) -> None:
        stock_bounds(self)
        self.__dict__["_igla_bounds"] = (len(self._data), self._objective_bounds)

    def update_objective_bounds(self: Any) -> None:
        pending, state = self.__dict__.get("_igla_pending"), self.__dict__.get("_igla_bounds")
        if pending is None or state is None:
            return full(self)
        old, new = pending
        n_before, bounds = state
        if (bounds is not self._objective_bounds or len(self._data) != n_before + (old is None)
                or (old is not None and old.status == StatusType.SUCCESS) or not bounds):
            return full(self)                       # anything but one new or replaced-uncounted entry: SMAC's own
        if new.status == StatusType.SUCCESS:
            costs = np.array(new.cost if isinstance(new.cost, Iterable) else [new.cost], dtype=float)
            if len(costs) != len(bounds) or not np.all(np.isfinite(costs)):
                return full(self)
            lo = np.minimum(np.array([b[0] for b in bounds], dtype=float), costs)
            hi = np.maximum(np.array([b[1] for b in bounds], dtype=float), costs)
            self._objective_bounds = [(a, b) for a, b in zip(lo, hi)]
        self.__dict__["_igla_bounds"] = (len(self._data), self._objective_bounds)

    return add, update_objective_bounds


@contextlib.contextmanager
def smac() -> Iterator[None]:
    """SMAC's membership tests and objective bounds without re-reading its whole run history each time."""
    from ConfigSpace import Configuration
    from smac.runhistory.runhistory import RunHistory
    add, bounds = _objective_bounds(RunHistory.__dict__["_add"], RunHistory.__dict__["_update_objective_bounds"])
    with _swapped([(Configuration, "__eq__", _config_eq), (RunHistory, "_add", add),
                   (RunHistory, "_update_objective_bounds", bounds)]):
        yield


# ---------------------------------------------------------------- statsmodels' KDE (HpBandSter's and Syne Tune's BOHB)
def _kde_pdf(stock: Any) -> Any:
    """KDEMultivariate.pdf at one point, as statsmodels computes it, with its per-KDE constants computed once.

    statsmodels' pdf(x) for one point is gpke(bw, data, x) / nobs: per column a kernel on (data[:, i], x[i]), the
    row products, divided by prod(bw[continuous]), summed. Here the same kernel functions run on the same values
    (each column copied out once; the Aitchison-Aitken kernel is given the number of levels statsmodels would count
    with np.unique each call), with the same reductions, so the result is the same bits."""
    import numpy as np
    from statsmodels.nonparametric import _kernel_base as kb
    from statsmodels.nonparametric import kernels

    def constants(self: Any) -> Any:
        hit = self.__dict__.get("_igla_pdf")
        if hit is not None and hit[0] is self.data and hit[1] is self.bw:
            return hit[2]
        vt = np.array(list(self.var_type))
        cont, ordered, unord = vt == "c", vt == "o", vt == "u"
        bw = np.asarray(self.bw)
        unordered = []
        for i in np.flatnonzero(unord):
            col = np.ascontiguousarray(self.data[:, i])
            unordered.append((int(i), self.bw[i], col, np.asarray(np.unique(col).size)))
        # Gaussian (continuous columns, all at once) and Wang-Ryzin (ordered columns, one row each of a transposed
        # copy) with the elementwise operations of kernels.gaussian and kernels.wang_ryzin:
        #   (1 / sqrt(2 pi)) * exp(-((Xi - x) ** 2) / (h ** 2 * 2.0))
        #   0.5 * (1 - h) * (h ** abs(Xi - x)), and 1 - h where Xi == x
        const = (cont, np.ascontiguousarray(self.data[:, cont]), np.array([v**2 * 2.0 for v in bw[cont]]),
                 ordered, np.ascontiguousarray(self.data[:, ordered].T), [bw[i] for i in np.flatnonzero(ordered)],
                 np.array([0.5 * (1 - h) for h in bw[ordered]]), np.array([1 - h for h in bw[ordered]]),
                 unordered, np.prod(self.bw[cont]), self.data.shape)
        self.__dict__["_igla_pdf"] = (self.data, self.bw, const)
        return const

    def pdf(self: Any, data_predict: Any = None) -> Any:
        if data_predict is None or getattr(self, "k_vars", 0) < 2 or np.ndim(data_predict) != 1:
            return stock(self, data_predict)
        x = kb._adjust_shape(data_predict, self.k_vars)[0]
        cont, data_c, h2, ordered, data_o, h_o, half, one_minus, unordered, bw_prod, shape = constants(self)
        kval = np.empty(shape)
        if data_c.shape[1]:
            kval[:, cont] = (1.0 / np.sqrt(2 * np.pi)) * np.exp(-((data_c - x[cont]) ** 2) / h2)
        if h_o:
            xo = x[ordered]
            dist = abs(data_o - xo[:, None])
            powers = np.empty_like(dist)
            for j, h in enumerate(h_o):
                powers[j] = h ** dist[j]
            kval[:, ordered] = np.where(data_o == xo[:, None], one_minus[:, None], half[:, None] * powers).T
        for i, h, col, levels in unordered:
            kval[:, i] = kernels.aitchison_aitken(h, col, x[i], num_levels=levels)
        return np.squeeze([(kval.prod(axis=1) / bw_prod).sum(axis=0) / self.nobs])

    return pdf


def _kde_probe(fast: Any, stock: Any) -> bool:
    """fast == stock bit for bit on random KDEs of the tools' kinds (continuous, ordered, unordered columns)."""
    import numpy as np
    from statsmodels.nonparametric.kernel_density import KDEMultivariate
    rng = np.random.default_rng(20261126)
    for var_type in ("cccccccu", "uoooooooo", "cu", "ccoouu"):
        for n in (12, 17, 40):
            cols = [rng.integers(0, 3, n) / 3 if v == "u" else rng.integers(0, 5, n) / 4 if v == "o"
                    else rng.random(n) for v in var_type]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")     # statsmodels' FutureWarning about its default RNG
                kde = KDEMultivariate(np.column_stack(cols), var_type=var_type, bw="normal_reference")
            for _ in range(8):
                x = [float(c[rng.integers(n)]) if rng.random() < 0.5 else float(rng.random()) for c in cols]
                a, b = fast(kde, x), stock(kde, x)
                if type(a) is not type(b) or a.shape != b.shape or a.tobytes() != b.tobytes():
                    return False
    return True


_PROBED: dict[Any, bool] = {}


@contextlib.contextmanager
def kde() -> Iterator[bool]:
    """statsmodels' KDEMultivariate.pdf at one point without its per-call overhead, if it passes the probe.

    Yields whether the fast path is on (a statsmodels whose arithmetic differs keeps its own pdf)."""
    from statsmodels.nonparametric.kernel_density import KDEMultivariate
    stock = KDEMultivariate.__dict__["pdf"]
    fast = _kde_pdf(stock)
    if stock not in _PROBED:                                  # once per process and statsmodels pdf
        _PROBED[stock] = _kde_probe(fast, stock)
    if not _PROBED[stock]:
        yield False
        return
    with _swapped([(KDEMultivariate, "pdf", fast)]):
        yield True

