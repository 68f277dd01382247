"""V3: BOHB (Falkner et al. 2018) on top of our ASHA: a density-ratio (TPE) sampler per family and rung.

For each family, at each rung k, the finished results of the race (validation BPB at rung k; a
diverged trial counts as the worst) are split into a "good" set, the best `bohb_top_fraction`
(15 %), and a "bad" set, the rest, following HpBandSter's rule (hpbandster/optimizers/
config_generators/bohb.py): n_good = max(d + 1, floor(top * n)), n_bad = max(d + 1, floor((1 - top)
* n)), and a rung has a model only when both sets hold more than d points (d = levers that vary in
the space; 7 here). The sampler models the highest rung that has one. Each set gets a product
kernel density over the levers, ordinal levers as such (statsmodels' `KDEMultivariate` with var
type "o": the Aitchison-Aitken/Wang-van Ryzin kernel on the lever's value index), bandwidths by
the normal reference rule clipped to [bohb_min_bandwidth, 1]. A proposal is:

- with probability `bohb_random_fraction` (1/3), or while no rung has a model: the fallback
  sampler's proposal (uniform over the grid: `RandomSampler`, or whatever base the race was given);
- otherwise the unseen config of the family with the highest l(x) / g(x) among the candidates.
  Over a finite space (a replay's `TableSpace`: the table's recorded configs) every unseen config
  of the family is a candidate, so the table is ranked rather than sampled; over the full grid,
  `bohb_candidates` (64) candidates are drawn from l with its bandwidths multiplied by
  `bohb_bandwidth_factor` (3): a good point is picked at random and each lever kept with
  probability 1 - min(1, factor * bw), else redrawn uniformly (HpBandSter's rule for discrete
  hyperparameters). Ties break by config id.

The density model (observations, encoding, the KDE fit, the pdf): `accelerators.bohb_density`. The
sampler keeps what is a pure function of its own inputs (lever values, the encoded candidates of a
finite space, the fits of the last rankings it saw), so a proposal costs one fit only when a rung's
results changed, with the same bits.

Warm start: `history` (config, rung index, BPB) observations are added to the race's own results
when the models are fitted, e.g. rows of past ledgers of the same preset (`history_from_rows`).
The harness and the V3 study use none (a replay warm-started from the table it replays would
know the answers); the live race uses none by default.

Falsifier (seed mode 3, `bohb_verdict`): on replays, ASHA+V3's regret at the pre-registered time
T must be lower than plain ASHA's (T = `bohb_regret_at_budget` x the table's harness budget, the
races anytime and sized by it, prereg v10; before v10 `bohb_regret_at` x the 81-trial race's median length),
one-sided Wilcoxon signed-rank paired by repeat at alpha / bonferroni_n; otherwise V3 is disabled
and sampling falls back to the base sampler (uniform). A live race reads the verdict from
assertions/v3_verdict.json, written by `python -m experiments.v3_study` for the committed table.
"""
from __future__ import annotations

import collections
import dataclasses
import functools
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from accelerators.bohb_density import (DensityModel, Observation, V3Error, encode, fit_model, fit_ranked,  # noqa: F401
                                       history_from_rows, lever_values, ordered_pdf, race_observations, ranked)
from igla_jax.evidence.prereg import Prereg, repo_root
from igla_jax.evidence.verdict import Verdict, VerdictFileError, load_verdict_file, write_verdict_file
from igla_jax.search.frozen import evolve
from igla_jax.search.interfaces import Proposal, RandomSampler
from igla_jax.search.search_space import Config

if TYPE_CHECKING:
    from igla_jax.search.race import RaceState

VERDICT_FILE = "v3_verdict.json"
VERDICT_KIND = "igla-v3-verdict"


@dataclasses.dataclass(frozen=True)
class BOHBState:
    """The sampler's seed, proposals so far, the fallback's state and how the last config was chosen."""
    seed: int
    draws: int
    fallback: Any
    last: str = "none"   # "random" | "model rung K" | "no model" | "disabled"
    model_proposals: int = 0


@dataclasses.dataclass(frozen=True)
class BOHBSampler:
    """V3 (see the module docstring). `space`: where model-guided configs come from (the full grid
    live, the table's stratum in a replay); `fallback`: the random part and everything while no
    model exists or while the verdict is disabled (default: uniform over `space`)."""
    prereg: Prereg
    space: Any
    verdict: Verdict
    fallback: Any = None
    history: tuple[Observation, ...] = ()
    name: str = "bohb"

    @property
    def enabled(self) -> bool:
        return self.verdict.enabled

    @functools.cached_property
    def _fallback(self) -> Any:
        return self.fallback if self.fallback is not None else RandomSampler(self.space)

    def init(self, seed: int) -> BOHBState:
        return BOHBState(seed=int(seed), draws=0, fallback=self._fallback.init(seed))

    def report(self) -> str:
        how = "BOHB density-ratio sampling over ASHA's rungs" if self.enabled else "uniform sampling (V3 disabled)"
        return f"{self.name}: {how}; V3 {self.verdict.line()}"

    @functools.cached_property
    def _memo(self) -> dict[Any, Any]:
        """Pure functions of this sampler's immutable inputs, kept: lever values and (for a finite space) every
        candidate, encoded, per family; the last fits by (family, rung, ranked points). Same values, computed once."""
        return {}

    def _values(self, family: str) -> tuple[tuple[Any, ...], ...]:
        key = ("values", family)
        if key not in self._memo:
            self._memo[key] = lever_values(self.space, family)
        return self._memo[key]

    def _fit(self, family: str, k: int, pts: tuple[tuple[float, str, Config], ...]) -> DensityModel | None:
        key = ("fit", family, k, tuple((b, cid) for b, cid, _ in pts))   # a config id names its config
        fits = self._memo.setdefault("fits", collections.OrderedDict())
        if key in fits:
            fits.move_to_end(key)
            return fits[key]
        m = fits[key] = fit_ranked(pts, k, self._values(family), self.prereg)
        if len(fits) > 64:
            fits.popitem(last=False)
        return m

    def model(self, race: "RaceState", family: str) -> DensityModel | None:
        """The model of the highest rung that has one (race results + history), or None."""
        n = len(race.config.rungs)
        per: list[list[tuple[float, Config]]] = [[] for _ in range(n)]   # what race_observations + history hold
        for t in race.trials:
            if t.config.family == family:
                for k, r in enumerate(t.results[:n]):
                    per[k].append((math.inf if r.bpb is None else float(r.bpb), t.config))
        for o in self.history:
            if o.config.family == family and 0 <= o.rung < n:
                per[o.rung].append((o.bpb, o.config))
        for k in reversed(range(n)):
            m = self._fit(family, k, ranked(per[k]))
            if m is not None:
                return m
        return None

    def _candidates(self, rng: np.random.Generator, m: DensityModel, family: str,
                    values: Sequence[Sequence[float]]) -> list[Config]:
        if hasattr(self.space, "configs"):   # a finite space: rank every config of the family
            return list(self.space.configs(family))
        out = []
        bw = np.minimum(1.0, self.prereg.bohb_bandwidth_factor * np.asarray(m.good.bw, float))
        for _ in range(self.prereg.bohb_candidates):
            base = np.zeros(len(values), np.int64)
            g = m.good_points[int(rng.integers(len(m.good_points)))]
            for j, dim in enumerate(m.dims):
                keep = rng.random() >= bw[j]
                base[dim] = int(g[j]) if keep else int(rng.integers(len(values[dim])))
            out.append(Config(family, *(values[i][int(base[i])] for i in range(len(values)))))
        return out

    def _model_pick(self, rng: np.random.Generator, race: "RaceState", family: str,
                    seen: set[str]) -> tuple[Config | None, str]:
        m = self.model(race, family)
        if m is None:
            return None, "no model"
        values = self._values(family)
        if hasattr(self.space, "configs"):   # a finite space: every config of the family, by id, encoded once
            key = ("table", family)
            if key not in self._memo:
                every = sorted({c.config_id: c for c in self._candidates(rng, m, family, values)}.values(),
                               key=lambda c: c.config_id)
                self._memo[key] = (every, np.stack([encode(c, values) for c in every]) if every else None)
            every, x_every = self._memo[key]
            fresh = [i for i, c in enumerate(every) if c.config_id not in seen]
            cs, x = [every[i] for i in fresh], (x_every[fresh] if fresh else None)
        else:
            cands = {c.config_id: c for c in self._candidates(rng, m, family, values) if c.config_id not in seen}
            cs = sorted(cands.values(), key=lambda c: c.config_id)
            x = np.stack([encode(c, values) for c in cs]) if cs else None
        if not cs:
            return None, f"model rung {m.rung + 1}: no unseen candidate"
        r = m.ratio(x)
        # the highest ratio, ties to the lowest id: np.argmax's first maximum (a NaN would order differently)
        best = int(np.argmax(r)) if not np.isnan(r).any() else max(range(len(cs)), key=lambda i: (float(r[i]), -i))
        return cs[best], f"model rung {m.rung + 1}"

    def propose(self, state: BOHBState, race: "RaceState", family: str, n: int) -> Proposal:
        fb = self._fallback
        if not self.enabled:
            p = fb.propose(state.fallback, race, family, n)
            return Proposal(dataclasses.replace(state, draws=state.draws + 1, fallback=p.state, last="disabled"),
                            p.configs, self.verdict, _extra(fb, p))
        rng = np.random.default_rng([state.seed, state.draws, 0xB0B])
        seen = set(race.seen_ids)
        picked: list[Config] = []
        n_random, how, models = 0, "random", 0
        for _ in range(n):
            if rng.random() < self.prereg.bohb_random_fraction:
                n_random += 1
                continue
            cfg, how = self._model_pick(rng, race, family, seen)
            if cfg is None:
                n_random += 1
            else:
                picked.append(cfg)
                seen.add(cfg.config_id)
                models += 1
        fstate, extra = state.fallback, ()
        if n_random:
            view = evolve(race, seen_ids=frozenset(seen))
            p = fb.propose(state.fallback, view, family, n_random)
            fstate, extra = p.state, _extra(fb, p)
            picked.extend(p.configs)
            if n_random == n:
                how = how if how.startswith("no") or "unseen" in how else "random"
        new = dataclasses.replace(state, draws=state.draws + 1, fallback=fstate, last=how,
                                  model_proposals=state.model_proposals + models)
        return Proposal(new, tuple(picked), self.verdict, extra)


def _extra(fb: Any, p: Proposal) -> tuple:
    """The fallback's own verdict (e.g. V5's) recorded beside V3's."""
    out = tuple(p.extra_verdicts)
    if p.verdict is not None:
        out = out + ((fb.name, p.verdict),)
    return out


# ---------------------------------------------------------------- falsifier
def regret_at(completions: Sequence[tuple[float, str, float]], t: float, true_bpb: Mapping[str, float],
              best: float, none_regret: float) -> float:
    """Regret at time t: the true BPB of the incumbent (lowest observed top-rung BPB finished by t) minus
    the best; `none_regret` when nothing finished by t."""
    inc, obs = None, math.inf
    for time_s, cid, bpb in completions:
        if time_s > t:
            break
        if bpb < obs:
            inc, obs = cid, bpb
    if inc is None:
        return none_regret
    if inc not in true_bpb:
        raise V3Error(f"regret_at: incumbent {inc} has no true BPB")
    return float(true_bpb[inc]) - best


def bohb_verdict(bohb_regrets: Sequence[float], asha_regrets: Sequence[float], prereg: Prereg) -> Verdict:
    """V3's falsifier: enabled iff ASHA+V3's regret at T is lower than ASHA's, paired by replay.

    One-sided Wilcoxon signed-rank (`igla_jax.evidence.verdict.wilcoxon_less` on bohb vs asha) at
    alpha / bonferroni_n; all pairs tied gives p = 1 (nothing to prefer: disabled).
    """
    from igla_jax.evidence.verdict import wilcoxon_less
    b, a = [float(x) for x in bohb_regrets], [float(x) for x in asha_regrets]
    if len(b) != len(a) or len(b) < 2:
        raise V3Error(f"bohb_verdict: need paired regrets of equal length >= 2, got {len(b)} and {len(a)}")
    if not all(math.isfinite(x) for x in b + a):
        raise V3Error("bohb_verdict: regrets must be finite")
    thr = prereg.alpha_per_arm
    if all(x == y for x, y in zip(b, a)):
        p = 1.0
    else:
        p = wilcoxon_less(b, a)
    what = (f"ASHA+V3 regret at T {np.mean(b):.4g} vs ASHA {np.mean(a):.4g} (mean of {len(b)} paired replays), "
            f"one-sided Wilcoxon p = {p:.3g}")
    if p < thr:
        return Verdict(True, p, thr, f"{what} < alpha/{prereg.bonferroni_n}: BOHB samples better")
    return Verdict(False, p, thr, f"{what} not < alpha/{prereg.bonferroni_n}: V3 disabled, uniform sampling")


def default_verdict_path() -> Path:
    return repo_root() / "assertions" / VERDICT_FILE


def write_v3_verdict(path: str | Path, verdict: Verdict, *, table: str, table_sha256: str, prereg: Prereg,
                     **payload: Any) -> Path:
    return write_verdict_file(path, VERDICT_KIND, verdict, table=table, table_sha256=table_sha256,
                              prereg=prereg, **payload)


def load_v3_verdict(prereg: Prereg, path: str | Path | None = None, *, table_sha256: str | None = None) -> Verdict:
    """V3's verdict from its file; missing = "not judged yet" (disabled); malformed or another table's: V3Error."""
    p = Path(path) if path is not None else default_verdict_path()
    try:
        return load_verdict_file(p, VERDICT_KIND, prereg, table_sha256=table_sha256,
                                 missing=f"not judged yet: {p} does not exist (run python -m experiments.v3_study "
                                         "on the complete curve table); V3 stays off, sampling is uniform")
    except VerdictFileError as e:
        raise V3Error(str(e)) from None
