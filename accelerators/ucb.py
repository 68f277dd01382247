"""V6: the family of each new trial chosen by UCB1 on first-rung results, with its falsifier and verdict file.

Reward (pre-registered, notes of ucb_memory_windows): the mid-rank of a trial's first-rung
validation BPB among the first-rung results of the trials in the memory, scaled to [0, 1]
(1 = lowest BPB; diverged = worst; a lone result = 0.5): the negative BPB normalised across
families by rank, bounded as UCB1 requires. Windows: window k holds trial starts
k*W .. k*W + W - 1 (W = ucb_window_trials, in `race.trials` order, which is start order); the
memory is the current window and the previous ucb_memory_windows - 1 (sliding-window UCB). Every
call recomputes the statistics from `race.trials`, so a replay of the same events makes the same
choices. A disabled verdict makes the allocator choose exactly as `RoundRobin` does.

Falsifier (seed mode 6): `ucb_verdict` compares paired per-replay regrets (`regret`) of UCB1 and
round robin with a one-sided Wilcoxon signed-rank test at alpha / bonferroni_n.
"""
from __future__ import annotations

import bisect
import dataclasses
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from igla_jax.evidence.prereg import Prereg, repo_root
from igla_jax.evidence.verdict import Verdict, VerdictFileError, load_verdict_file, write_verdict_file
from igla_jax.search.interfaces import Allocation, RoundRobin

if TYPE_CHECKING:
    from igla_jax.search.race import RaceState

VERDICT_FILE = "v6_verdict.json"
VERDICT_KIND = "igla-v6-verdict"


class V6Error(ValueError):
    """A V6 verdict file or regret series is malformed; the message names the file or the value."""


@dataclasses.dataclass(frozen=True)
class UCBState:
    """Allocator state: round-robin cursor (used when disabled) and the last choice's statistics per family."""
    cursor: int = 0
    families: tuple[str, ...] = ()
    counts: tuple[int, ...] = ()        # pulls (trial starts) per family in the memory
    rewards: tuple[float, ...] = ()     # reward sums per family in the memory
    mode: str = "ucb1"                  # ucb1 | explore | round_robin (V6 disabled)


def window_of(start_index: int, window_trials: int) -> int:
    """The window a trial start belongs to (0-based start index in race order)."""
    return start_index // window_trials


def mid_rank_rewards(bpbs: Sequence[float | None]) -> tuple[float, ...]:
    """Reward in [0, 1] per result: fraction of the others it beats (ties half); None (diverged) = +inf."""
    x = [math.inf if b is None or math.isnan(b) else float(b) for b in bpbs]
    m = len(x)
    if m == 1:
        return (0.5,)
    xs = sorted(x)   # the counts above and level by bisection (exact integers, so the same floats as summing 1.0s)
    out = []
    for a in x:
        lo, hi = bisect.bisect_left(xs, a), bisect.bisect_right(xs, a)
        out.append(((m - hi) + 0.5 * ((hi - lo) - 1)) / (m - 1))
    return tuple(out)


def family_stats(race: "RaceState", families: Sequence[str], *, window_trials: int,
                 memory_windows: int) -> tuple[tuple[int, ...], tuple[float, ...], tuple[int, ...]]:
    """(pulls, reward sums, rewarded pulls) per family from the trials started in the memory."""
    trials = race.trials
    cur = window_of(len(trials), window_trials)   # the window the next start falls in
    first = max(0, (cur - memory_windows + 1) * window_trials)
    mem = trials[first:]
    done = [t for t in mem if t.results]
    rew = mid_rank_rewards([t.results[0].bpb for t in done])
    idx = {f: i for i, f in enumerate(families)}
    pulls, sums, seen = [0] * len(families), [0.0] * len(families), [0] * len(families)
    for t in mem:
        if t.config.family in idx:
            pulls[idx[t.config.family]] += 1
    for t, r in zip(done, rew):
        if t.config.family in idx:
            sums[idx[t.config.family]] += r
            seen[idx[t.config.family]] += 1
    return tuple(pulls), tuple(sums), tuple(seen)


def ucb1_choice(families: Sequence[str], available: Sequence[str], pulls: Sequence[int], sums: Sequence[float],
                seen: Sequence[int], c: float) -> tuple[str, str]:
    """(family, mode): an unpulled available family first, else the highest mean + c*sqrt(2 ln N / n).

    Auer, Cesa-Bianchi & Fischer (2002), UCB1. A family pulled but not yet rewarded has mean 1
    (optimistic); ties go to the earlier family in `families`.
    """
    avail = [i for i, f in enumerate(families) if f in available]
    if not avail:
        raise ValueError(f"ucb1: none of {tuple(families)} is available ({tuple(available)})")
    for i in avail:
        if pulls[i] == 0:
            return families[i], "explore"
    n_total = sum(pulls[i] for i in avail)
    best, best_i = -math.inf, avail[0]
    for i in avail:
        mean = sums[i] / seen[i] if seen[i] else 1.0
        score = mean + c * math.sqrt(2.0 * math.log(n_total) / pulls[i])
        if score > best:   # strict: the earlier family keeps a tie
            best, best_i = score, i
    return families[best_i], "ucb1"


@dataclasses.dataclass(frozen=True)
class UCB1Allocator:
    """V6 allocator: UCB1 over families on rank-normalised first-rung rewards in a sliding window of starts.

    Args:
      window_trials, memory_windows, c: the pre-registered ucb_window_trials, ucb_memory_windows, ucb_c.
      verdict: V6's verdict (`load_v6_verdict`); disabled = choose exactly as RoundRobin.
    Reference: Auer, Cesa-Bianchi & Fischer 2002, "Finite-time analysis of the multiarmed bandit problem".
    """
    window_trials: int
    memory_windows: int
    c: float
    verdict: Verdict
    name: str = "ucb1"

    @classmethod
    def from_prereg(cls, prereg: Prereg, verdict: Verdict) -> "UCB1Allocator":
        return cls(prereg.ucb_window_trials, prereg.ucb_memory_windows, prereg.ucb_c, verdict)

    @property
    def enabled(self) -> bool:
        return self.verdict.enabled

    def report(self) -> str:
        """One line: what this allocator does in the race and why."""
        how = "UCB1 over families" if self.enabled else "round robin (V6 disabled)"
        return f"{self.name}: {how}; V6 {self.verdict.line()}"

    def init(self, families: tuple[str, ...]) -> UCBState:
        return UCBState(families=tuple(families), mode="ucb1" if self.enabled else "round_robin")

    def next_family(self, state: UCBState, race: "RaceState", available: tuple[str, ...]) -> Allocation:
        fams = race.config.families
        if not self.enabled:
            rr = RoundRobin().next_family(state.cursor, race, available)
            return Allocation(dataclasses.replace(state, cursor=rr.state, mode="round_robin"), rr.family, self.verdict)
        pulls, sums, seen = family_stats(race, fams, window_trials=self.window_trials,
                                         memory_windows=self.memory_windows)
        fam, mode = ucb1_choice(fams, available, pulls, sums, seen, self.c)
        return Allocation(UCBState(cursor=state.cursor, families=fams, counts=pulls, rewards=sums, mode=mode), fam,
                          self.verdict)

    def credit(self, state: UCBState, family: str) -> UCBState:
        return state  # pulls are recomputed from race.trials, which holds every started trial


# ---------------------------------------------------------------- falsifier
def family_values(top_bpb: Mapping[str, Sequence[float | None]], diverged_bpb: float) -> dict[str, float]:
    """A family's value: mean true top-rung BPB of its configs, a diverged config counting as diverged_bpb."""
    out = {}
    for fam, vals in top_bpb.items():
        xs = [diverged_bpb if v is None or math.isnan(v) else float(v) for v in vals]
        if not xs:
            raise V6Error(f"family {fam!r} has no configs to value")
        out[fam] = sum(xs) / len(xs)
    return out


def regret(chosen: Sequence[str], values: Mapping[str, float], *, window_trials: int, windows: int) -> float:
    """Mean over the last `windows` complete windows of (mean value of the chosen families - best value).

    chosen: the family of each trial start, in start order. Raises V6Error when the race has fewer
    complete windows than `windows` (it cannot be judged).
    """
    complete = len(chosen) // window_trials
    if complete < windows:
        raise V6Error(f"regret: {len(chosen)} trial starts make {complete} complete windows of {window_trials}; "
                      f"the falsifier needs the last {windows} (ucb_regret_windows)")
    unknown = sorted(set(chosen) - set(values))
    if unknown:
        raise V6Error(f"regret: chosen family {unknown[0]!r} has no value")
    best = min(values.values())
    gaps = []
    for k in range(complete - windows, complete):
        block = chosen[k * window_trials:(k + 1) * window_trials]
        gaps.append(sum(values[f] - best for f in block) / window_trials)
    return sum(gaps) / windows


def ucb_verdict(ucb_regrets: Sequence[float], uniform_regrets: Sequence[float], prereg: Prereg) -> Verdict:
    """V6's falsifier: enabled iff UCB1's regret is lower than round robin's, paired by replay.

    One-sided Wilcoxon signed-rank (`igla_jax.evidence.verdict.wilcoxon_less` on ucb vs uniform) at
    alpha / bonferroni_n; all pairs tied gives p = 1 (nothing to prefer: disabled).
    """
    from igla_jax.evidence.verdict import wilcoxon_less
    u, r = [float(x) for x in ucb_regrets], [float(x) for x in uniform_regrets]
    if len(u) != len(r) or len(u) < 2:
        raise V6Error(f"ucb_verdict: need paired regrets of equal length >= 2, got {len(u)} and {len(r)}")
    if not all(math.isfinite(x) for x in u + r):
        raise V6Error("ucb_verdict: regrets must be finite")
    thr = prereg.alpha_per_arm
    d = [a - b for a, b in zip(u, r)]
    if all(x == 0 for x in d):
        p = 1.0
    else:
        p = wilcoxon_less(u, r)
    mu, mr = sum(u) / len(u), sum(r) / len(r)
    what = (f"UCB1 regret {mu:.4g} vs round robin {mr:.4g} (mean of {len(u)} paired replays), "
            f"one-sided Wilcoxon p = {p:.3g}")
    if p < thr:
        return Verdict(True, p, thr, f"{what} < alpha/{prereg.bonferroni_n}: UCB1 allocates better")
    return Verdict(False, p, thr, f"{what} not < alpha/{prereg.bonferroni_n}: V6 disabled, round robin allocates")


# ---------------------------------------------------------------- the verdict file
def default_verdict_path() -> Path:
    return repo_root() / "assertions" / VERDICT_FILE


def write_v6_verdict(path: str | os.PathLike, verdict: Verdict, *, table: str, table_sha256: str, prereg: Prereg,
                     ucb_regrets: Sequence[float], uniform_regrets: Sequence[float], repeats: int,
                     **figures: Any) -> Path:
    """Writes the study's verdict (atomically) with the table's sha256, both regret series and any other figures."""
    return write_verdict_file(path, VERDICT_KIND, verdict, table=table, table_sha256=table_sha256, prereg=prereg,
                              repeats=int(repeats), ucb_regrets=[float(x) for x in ucb_regrets],
                              uniform_regrets=[float(x) for x in uniform_regrets], **figures)


def load_v6_verdict(prereg: Prereg, path: str | os.PathLike | None = None, *,
                    table_sha256: str | None = None) -> Verdict:
    """V6's verdict from its file; a missing file means "not judged yet" (disabled). Malformed raises V6Error.

    table_sha256: when given, a verdict judged on another table is refused (V6Error).
    """
    p = Path(path) if path is not None else default_verdict_path()
    try:
        return load_verdict_file(p, VERDICT_KIND, prereg, table_sha256=table_sha256, label="V6 verdict",
                                 missing=f"not judged yet: {p} does not exist (run python -m experiments.v6_study "
                                         "on the complete curve table); V6 stays off, round robin allocates")
    except VerdictFileError as e:
        raise V6Error(str(e)) from None
