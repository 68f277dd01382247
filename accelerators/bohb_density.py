"""V3's density model (Falkner et al. 2018, after HpBandSter): observations, lever encoding, the KDE pair per rung.

`fit_model` fits a rung's good and bad kernel densities by HpBandSter's rule (`accelerators.bohb`'s
docstring has the rule and the sampler that uses them); `fit_ranked` is the same fit on points already
ranked (`ranked`), which the sampler keeps per rung between proposals; `ordered_pdf` evaluates
statsmodels' all-ordinal density at many points at once with its bits.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from igla_jax.evidence.prereg import Prereg
from igla_jax.search.search_space import LEVER_FIELDS, Config

if TYPE_CHECKING:
    from igla_jax.search.race import RaceState


class V3Error(ValueError):
    """A BOHB space, history or regret series is malformed; the message names it."""


@dataclasses.dataclass(frozen=True)
class Observation:
    config: Config
    rung: int
    bpb: float          # +inf for a diverged result


def lever_values(space: Any, family: str) -> tuple[tuple[Any, ...], ...]:
    """The sorted distinct values of each lever of `family` in a SearchSpace or a finite (table) space."""
    if hasattr(space, "values"):
        return tuple(tuple(vs) for vs in space.values(family))
    cfgs = space.configs(family)
    return tuple(tuple(sorted({getattr(c, f) for c in cfgs})) for f in LEVER_FIELDS)


def encode(cfg: Config, values: Sequence[Sequence[float]]) -> np.ndarray:
    """The config as value indices per lever (nearest value, so a config from another grid still maps)."""
    return np.array(_indices(cfg, tuple(tuple(vs) for vs in values)), np.int64)


@functools.lru_cache(maxsize=1 << 16)
def _indices(cfg: Config, values: tuple[tuple[Any, ...], ...]) -> tuple[int, ...]:
    # a replay encodes the same few hundred configs thousands of times: each once per grid
    return tuple(int(np.argmin([abs(float(getattr(cfg, f)) - float(x)) for x in vs]))
                 for f, vs in zip(LEVER_FIELDS, values))


def race_observations(race: "RaceState", family: str, diverged_bpb: float = math.inf) -> tuple[Observation, ...]:
    """Every rung result of the family's trials in the race (diverged = diverged_bpb)."""
    out = []
    for t in race.trials:
        if t.config.family != family:
            continue
        for k, r in enumerate(t.results):
            out.append(Observation(t.config, k, diverged_bpb if r.bpb is None else float(r.bpb)))
    return tuple(out)


def history_from_rows(rows: Sequence[Mapping[str, Any]], rungs: Sequence[int]) -> tuple[Observation, ...]:
    """Warm-start observations from ledger rows of a race with the same rungs: every search result row."""
    from igla_jax.search.search_space import config_from_dict
    out = []
    for r in rows:
        extra = r.get("extra") or {}
        if extra.get("action") != "train" or r.get("status") not in ("trained", "diverged"):
            continue
        k = extra.get("rung")
        if k is None or not 0 <= int(k) < len(rungs):
            continue
        bpb = math.inf if r.get("bpb") is None else float(r["bpb"])
        out.append(Observation(config_from_dict(r["config"], source=f"ledger row {r.get('event_id')}"), int(k), bpb))
    return tuple(out)


@dataclasses.dataclass(frozen=True)
class DensityModel:
    """l(x) and g(x) of one family at one rung (the varying levers only)."""
    rung: int
    dims: tuple[int, ...]
    good: Any
    bad: Any
    good_points: np.ndarray
    n_good: int
    n_bad: int

    def ratio(self, x: np.ndarray) -> np.ndarray:
        xs = x[:, self.dims].astype(float)
        return ordered_pdf(self.good, xs) / np.maximum(ordered_pdf(self.bad, xs), 1e-32)


def ordered_pdf(kde: Any, xs: np.ndarray) -> np.ndarray:
    """statsmodels' `KDEMultivariate.pdf` of an all-ordinal KDE at every row of xs at once: the same bits.

    The Wang-van Ryzin kernel (Wang and van Ryzin 1981; statsmodels' `kernels.wang_ryzin`) is
    (1 - h) where the value index equals the point's and 0.5 (1 - h) h^|X - x| elsewhere; a point's
    density is the mean over the data of the product over levers. statsmodels loops over the points in
    Python; this evaluates the same elementwise expressions for all of them, multiplies the levers left
    to right and sums each point's row, as statsmodels' reductions do (tests/test_bohb.py checks the bytes).
    """
    if set(kde.var_type) != {"o"}:
        raise V3Error(f"ordered_pdf: var_type {kde.var_type!r} is not all ordinal")
    data, bw = np.asarray(kde.data, float), np.asarray(kde.bw, float)
    xs = np.asarray(xs, float).reshape(-1, data.shape[1])
    dens = None
    for j in range(data.shape[1]):
        h, col, at = bw[j], data[None, :, j], xs[:, j, None]
        k = np.where(col == at, 1 - h, 0.5 * (1 - h) * (h ** abs(col - at)))
        dens = k if dens is None else dens * k
    # each row summed along its contiguous axis: numpy's pairwise sum, the bits of summing the rows one by one
    return np.asarray(dens.sum(axis=1) / kde.nobs, float)


def fit_model(obs: Sequence[Observation], rung: int, values: Sequence[Sequence[float]], prereg: Prereg
              ) -> DensityModel | None:
    """The rung's KDE pair by HpBandSter's rule, or None when the rung has too few results."""
    return fit_ranked(ranked([(o.bpb, o.config) for o in obs if o.rung == rung]), rung, values, prereg)


def ranked(points: Sequence[tuple[float, Config]]) -> tuple[tuple[float, str, Config], ...]:
    """(bpb, config id, config) of each point, best first, ties by config id (stable: equal keys keep their order)."""
    return tuple(sorted(((b, c.config_id, c) for b, c in points), key=lambda p: (p[0], p[1])))


def fit_ranked(pts: Sequence[tuple[float, str, Config]], rung: int, values: Sequence[Sequence[float]],
               prereg: Prereg) -> DensityModel | None:
    """`fit_model` on one rung's points as `ranked` orders them (good: the first n_good; bad: the next n_bad)."""
    from statsmodels.nonparametric.kernel_density import KDEMultivariate
    dims = tuple(i for i, vs in enumerate(values) if len(vs) > 1)
    d = len(dims)
    if d == 0 or not pts:
        return None
    n = len(pts)
    n_good = max(d + 1, int(math.floor(prereg.bohb_top_fraction * n)))
    n_bad = max(d + 1, int(math.floor((1.0 - prereg.bohb_top_fraction) * n)))
    if n <= d or n - n_good <= d:   # the good set holds min(n, n_good), the bad min(n_bad, n - n_good): one is <= d
        return None
    vt = tuple(tuple(vs) for vs in values)
    x = np.array([_indices(c, vt) for _, _, c in pts], np.int64)[:, dims]
    good, bad = x[:n_good], x[n_good:n_good + n_bad]
    kdes = []
    for data in (good, bad):
        kde = KDEMultivariate(data=data.astype(float), var_type="o" * d, bw="normal_reference",
                              rng=np.random.default_rng(0))  # the normal reference rule draws nothing
        kde.bw = np.clip(np.nan_to_num(kde.bw, nan=1.0), prereg.bohb_min_bandwidth, 1.0)
        kdes.append(kde)
    return DensityModel(rung, dims, kdes[0], kdes[1], good, len(good), len(bad))
