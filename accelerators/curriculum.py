"""V7: the online curriculum in the race, its falsifier (seed mode 7) and its verdict file.

The curriculum trains inside the trainer (`igla_jax.training.step.curriculum_select`: factor x batch
candidates scored by a forward pass, the batch trained on the ones at or above the running
quantile of candidate losses). Here: whether a race uses it, and the judgement of the study
(`python -m experiments.curriculum_study`) that decides it.

Falsifier (pre-registered notes of curriculum_seeds), both at alpha / bonferroni_n:
  (a) variance: one-sided Brown-Forsythe (median-centred Levene) test of H0 "the curriculum's
      across-seed BPB variance is at most (1 + curriculum_var_increase_max) x the baseline's",
      pooled over configs: within each (config, arm) the absolute deviations from the median,
      the curriculum's divided by sqrt(1 + max increase) (a variance ratio r is a scale ratio
      sqrt(r)), then a one-sided pooled-variance t-test (the two-group Levene F is its square),
      H1 curriculum larger. Significant = falsified: V7 disabled.
  (b) gain: BPB at matched wall-clock (`matched_wallclock`), one-sided paired t-test over the
      (config, seed) pairs (both arms of a pair share the seed, hence the initial parameters),
      H1 curriculum lower. Not significant = "no gain": V7 stays off.
V7 is enabled only when (a) is not falsified and (b) is significant. A study smaller than the
pre-registered design (curriculum_configs x curriculum_seeds) is not judged (disabled).

Race (`--curriculum on|off|force`): `CurriculumSampler` wraps the race's sampler and marks every
proposed config `curriculum=True` (its own config id) only when V7's verdict is enabled, or when
forced (`force`, for studies; the recorded verdict then says it was forced). With `on` and a
disabled or missing verdict the race runs without the curriculum and records why.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from igla_jax.evidence.prereg import Prereg, repo_root
from igla_jax.evidence.verdict import Verdict
from igla_jax.search.interfaces import Proposal, Sampler

VERDICT_FILE = "v7_verdict.json"
VERDICT_KIND = "igla-v7-verdict"
STUDY_FILE = "curriculum_study.json"
STUDY_KIND = "igla-curriculum-study"


class V7Error(ValueError):
    """A V7 study or verdict file is malformed; the message names the file or the value."""


# ---------------------------------------------------------------- the race wrapper
@dataclasses.dataclass(frozen=True)
class CurriculumSamplerState:
    """The base sampler's state and the base ids of the configs issued with the curriculum."""
    base: Any
    issued: frozenset[str] = frozenset()


@dataclasses.dataclass(frozen=True)
class CurriculumSampler:
    """Wraps a base sampler: configs get curriculum=True iff V7's verdict is enabled or `force`.

    The race's seen_ids hold the curriculum configs' ids, which differ from the base configs' ids;
    the base sees them as well as the base ids already issued, so it never re-proposes a config.
    """
    base: Sampler
    v7: Verdict                 # V7's verdict (load_v7_verdict)
    force: bool = False
    name: str = "curriculum"

    @property
    def active(self) -> bool:
        return self.force or self.v7.enabled

    @property
    def verdict(self) -> Verdict:
        """The verdict the race records: V7's own, or, when forced, an enabled one that says so."""
        if self.force and not self.v7.enabled:
            return Verdict(True, self.v7.statistic, self.v7.threshold,
                           f"FORCED on by --curriculum force (a study, not evidence); V7's verdict: {self.v7.line()}")
        return self.v7

    def report(self) -> str:
        how = ("trains with the online curriculum" if self.active else
               "trains without the curriculum (V7 not enabled; --curriculum force overrides for a study)")
        return f"curriculum: {how}; V7 {self.verdict.line()}"

    def init(self, seed: int) -> CurriculumSamplerState:
        return CurriculumSamplerState(self.base.init(seed))

    def propose(self, state: CurriculumSamplerState, race: Any, family: str, n: int) -> Proposal:
        if not self.active:
            p = self.base.propose(state.base, race, family, n)
            return Proposal(dataclasses.replace(state, base=p.state), p.configs, self.verdict,
                            ((self.base.name, p.verdict),) + p.extra_verdicts)
        view = dataclasses.replace(race, seen_ids=frozenset(race.seen_ids) | state.issued)
        p = self.base.propose(state.base, view, family, n)
        configs = tuple(dataclasses.replace(c, curriculum=True) for c in p.configs)
        new = CurriculumSamplerState(p.state, state.issued | {c.config_id for c in p.configs})
        return Proposal(new, configs, self.verdict, ((self.base.name, p.verdict),) + p.extra_verdicts)


# ---------------------------------------------------------------- the study's evidence
@dataclasses.dataclass(frozen=True)
class CurriculumStudy:
    """Per config, per seed (same seed order in both arms): BPB at matched steps and at matched wall-clock."""
    config_ids: tuple[str, ...]
    base_steps: tuple[tuple[float, ...], ...]     # baseline validation BPB at the last step
    cur_steps: tuple[tuple[float, ...], ...]      # curriculum validation BPB at the same step
    base_wall: tuple[tuple[float, ...], ...]      # baseline BPB at the matched wall-clock budget
    cur_wall: tuple[tuple[float, ...], ...]       # curriculum BPB at the same budget

    def __post_init__(self) -> None:
        n = len(self.config_ids)
        for f in ("base_steps", "cur_steps", "base_wall", "cur_wall"):
            v = getattr(self, f)
            if len(v) != n:
                raise V7Error(f"CurriculumStudy.{f}: {len(v)} configs, expected {n}")
            for i, (a, b) in enumerate(zip(v, self.base_steps)):
                if len(a) != len(b) or len(a) < 2:
                    raise V7Error(f"CurriculumStudy.{f}[{i}]: {len(a)} seeds; every arm needs the same >= 2 seeds")

    @property
    def seeds(self) -> int:
        return min(len(v) for v in self.base_steps)


def study_from_json(data: Mapping[str, Any], source: str = "study") -> CurriculumStudy:
    """The evidence of a study file written by experiments.studies.curriculum_study; V7Error names `source`."""
    try:
        if data.get("kind") != STUDY_KIND:
            raise ValueError(f"kind {data.get('kind')!r}, expected {STUDY_KIND!r}")
        cs = data["configs"]
        return CurriculumStudy(
            tuple(str(c["config_id"]) for c in cs),
            *(tuple(tuple(_num(x) for x in c[arm][key]) for c in cs)
              for arm, key in (("baseline", "bpb_at_steps"), ("curriculum", "bpb_at_steps"),
                               ("baseline", "bpb_at_wallclock"), ("curriculum", "bpb_at_wallclock"))))
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise V7Error(f"{source}: not a curriculum study ({type(e).__name__}: {e})") from None


def _num(x: Any) -> float:
    return math.nan if x is None else float(x)


def bpb_at_step(steps: Sequence[int], bpb: Sequence[float], s: float) -> float:
    """BPB at step s from ladder values: linear in log(step) between the ladder points around s.

    Learning curves are close to linear in log(step) over a few hundred steps; a straight line in
    the step itself would lie above the convex curve. s outside the ladder is an error.
    """
    st = np.asarray(steps, float)
    if not st[0] <= s <= st[-1]:
        raise V7Error(f"bpb_at_step: step {s:.1f} outside the evaluated ladder [{st[0]:g}, {st[-1]:g}]")
    return float(np.interp(math.log(s), np.log(st), np.asarray(bpb, float)))


def matched_wallclock(steps: Sequence[int], base_s: Sequence[float], cur_s: Sequence[float]
                      ) -> tuple[float, float, float]:
    """(overhead, baseline step, curriculum step) at matched training wall-clock.

    base_s, cur_s: each arm's training seconds (compile and evaluation excluded) of every ladder
    segment (steps[k-1], steps[k]], the two arms' segment k measured back to back on the same
    machine. overhead = the median over segments of cur_s[k] / base_s[k] (seconds per step of the
    curriculum over the baseline's; the median of paired ratios is robust to load from other
    processes, which a shared machine adds to one segment and not the next). The budget is the
    faster arm's time to the last step: that arm is read at the last step, the slower one at
    last step / overhead (or x overhead when the curriculum is the faster).
    """
    b, c = np.asarray(base_s, float), np.asarray(cur_s, float)
    if b.shape != c.shape or b.size != len(steps) or not (np.all(b > 0) and np.all(c > 0)):
        raise V7Error("matched_wallclock: need positive seconds for every ladder segment of both arms")
    overhead = float(np.median(c / b))
    top = float(steps[-1])
    return overhead, (top if overhead >= 1 else top * overhead), (top / overhead if overhead >= 1 else top)


# ---------------------------------------------------------------- the falsifier
def pooled_variance_ratio(cur: Sequence[Sequence[float]], base: Sequence[Sequence[float]]) -> float:
    """Mean over configs of the curriculum's across-seed sample variance / the same for the baseline."""
    vc = float(np.mean([np.var(np.asarray(x, float), ddof=1) for x in cur]))
    vb = float(np.mean([np.var(np.asarray(x, float), ddof=1) for x in base]))
    return vc / vb if vb > 0 else (math.inf if vc > 0 else 1.0)


def brown_forsythe_greater(cur: Sequence[Sequence[float]], base: Sequence[Sequence[float]],
                           max_increase: float) -> tuple[float, float]:
    """(p, t): one-sided Brown-Forsythe test of H1 "variance(cur) > (1 + max_increase) variance(base)".

    Groups are configs: deviations are taken from each (config, arm) median, so configs with
    different mean BPB pool; the curriculum's are divided by sqrt(1 + max_increase). Then a
    pooled-variance t-test on the deviations (scipy.stats.ttest_ind, alternative "greater").
    Brown & Forsythe (1974); Levene (1960). No spread at all in either arm gives p = 1.
    """
    from scipy.stats import ttest_ind
    z_cur = np.concatenate([np.abs(np.asarray(x, float) - np.median(x)) for x in cur]) / math.sqrt(1 + max_increase)
    z_base = np.concatenate([np.abs(np.asarray(x, float) - np.median(x)) for x in base])
    if not np.any(z_cur) and not np.any(z_base):
        return 1.0, 0.0
    with warnings.catch_warnings():   # near-identical deviations (e.g. 2 seeds per group) warn; p is still defined
        warnings.simplefilter("ignore", RuntimeWarning)
        res = ttest_ind(z_cur, z_base, equal_var=True, alternative="greater")
    return float(np.nan_to_num(res.pvalue, nan=1.0)), float(res.statistic)


def curriculum_verdict(study: CurriculumStudy, prereg: Prereg) -> Verdict:
    """V7's falsifier: enabled iff the variance is not falsified AND BPB at matched wall-clock is lower.

    Args:
      study: BPB per config and seed, both arms, at matched steps and at matched wall-clock.
      prereg: alpha, bonferroni_n, curriculum_var_increase_max, curriculum_configs, curriculum_seeds.
    Returns:
      The Verdict. statistic/threshold: the variance test's p when it falsifies V7, else the gain
      test's p; threshold alpha / bonferroni_n. The reason gives both tests and the figures.
    """
    from scipy.stats import ttest_rel
    thr = prereg.alpha_per_arm
    level = f"alpha/{prereg.bonferroni_n} = {thr:.4g}"
    n_cfg, n_seed = len(study.config_ids), study.seeds
    if n_cfg < prereg.curriculum_configs or n_seed < prereg.curriculum_seeds:
        return Verdict(False, math.nan, thr, f"not judged: the study has {n_cfg} configs x {n_seed} seeds, fewer than "
                                             f"the pre-registered {prereg.curriculum_configs} x {prereg.curriculum_seeds}; "
                                             "V7 stays off")
    if not all(math.isfinite(x) for g in study.base_steps + study.base_wall for x in g):
        raise V7Error("curriculum_verdict: a baseline run diverged; choose configs the baseline trains (the study is void)")
    if not all(math.isfinite(x) for g in study.cur_steps + study.cur_wall for x in g):
        return Verdict(False, 0.0, thr, "a curriculum run diverged where its baseline did not: variance falsified, "
                                        "V7 disabled")
    ratio = pooled_variance_ratio(study.cur_steps, study.base_steps)
    p_var, _ = brown_forsythe_greater(study.cur_steps, study.base_steps, prereg.curriculum_var_increase_max)
    var_txt = (f"across-seed variance ratio {ratio:.3g} (curriculum / baseline, {n_cfg} configs x {n_seed} seeds), "
               f"one-sided Brown-Forsythe p = {p_var:.3g} for > x{1 + prereg.curriculum_var_increase_max:g}")
    if p_var < thr:
        return Verdict(False, p_var, thr, f"{var_txt} < {level}: variance falsified, V7 disabled")
    cur = [x for g in study.cur_wall for x in g]
    base = [x for g in study.base_wall for x in g]
    d = np.asarray(cur) - np.asarray(base)
    p_gain = 1.0 if not np.any(d) else float(np.nan_to_num(ttest_rel(cur, base, alternative="less").pvalue, nan=1.0))
    gain_txt = (f"BPB at matched wall-clock curriculum {np.mean(cur):.4f} vs baseline {np.mean(base):.4f} "
                f"(mean paired difference {np.mean(d):+.4f} over {d.size} pairs), one-sided paired t p = {p_gain:.3g}")
    if p_gain < thr:
        return Verdict(True, p_gain, thr, f"{var_txt} >= {level}: variance not falsified; {gain_txt} < {level}: "
                                          "V7 enabled")
    return Verdict(False, p_gain, thr, f"{var_txt} >= {level}: variance not falsified; {gain_txt} >= {level}: "
                                       "no gain, V7 stays off")


# ---------------------------------------------------------------- the verdict file
def default_verdict_path() -> Path:
    return repo_root() / "assertions" / VERDICT_FILE


def default_study_path() -> Path:
    return repo_root() / "assertions" / STUDY_FILE


def atomic_json(path: str | os.PathLike, data: Any) -> Path:
    """Writes data as indented JSON (no NaN) to path via a temporary file and a rename."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    os.replace(tmp, p)
    return p


def write_v7_verdict(path: str | os.PathLike, verdict: Verdict, *, study: str, study_sha256: str,
                     prereg: Prereg) -> Path:
    """Writes V7's verdict (atomically) with the study file it was judged on and that file's sha256."""
    v = dataclasses.asdict(verdict)
    v["statistic"] = None if math.isnan(v["statistic"]) else v["statistic"]
    return atomic_json(path, {"kind": VERDICT_KIND, "study": study, "study_sha256": study_sha256,
                               "prereg_version": prereg.version, "verdict": v})


def load_v7_verdict(prereg: Prereg, path: str | os.PathLike | None = None) -> Verdict:
    """V7's verdict from its file; a missing file means "not judged yet" (disabled). Malformed raises V7Error."""
    p = Path(path) if path is not None else default_verdict_path()
    if not p.is_file():
        return Verdict(False, math.nan, prereg.alpha_per_arm,
                       f"not judged yet: {p} does not exist (run python -m experiments.curriculum_study); "
                       "V7 stays off, the race trains without the curriculum")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
        if data.get("kind") != VERDICT_KIND:
            raise ValueError(f"kind {data.get('kind')!r}, expected {VERDICT_KIND!r}")
        v = data["verdict"]
        stat = math.nan if v["statistic"] is None else float(v["statistic"])
        return Verdict(v["enabled"], stat, float(v["threshold"]), v["reason"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise V7Error(f"{p}: not a V7 verdict file ({e})") from None
