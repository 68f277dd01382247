"""The pre-registered victory predicate: row rules, three seeds below target, t-test and Welch.

All thresholds come from the pre-registration (`igla_jax.evidence.prereg`, version 2). Every BPB rule and
test reads a row's `test_bpb` (the test half of the held-out bytes, which nothing in the search
selects on), never its `bpb` (validation). Every rejection carries a reason that starts with the
rule's name (the constants below), so a caller and a test can tell which rule failed.
"""
from __future__ import annotations

import functools
import math
import re
import subprocess
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.stats

from igla_jax.evidence.ledger_row import VICTORY_STATUSES
from igla_jax.evidence.prereg import Prereg, repo_root

# Row rules.
MALFORMED_ROW = "malformed_row"
TEST_BPB_MISSING = "test_bpb_missing"
BPB_NONFINITE = "bpb_nonfinite"
BPB_BELOW_BAND = "bpb_below_band"
BPB_ABOVE_BAND = "bpb_above_band"
STEP_TOO_EARLY = "step_too_early"
SEED_OUTSIDE_SET = "seed_outside_set"
DUPLICATE_SEED = "duplicate_seed"
UNKNOWN_SHA = "unknown_sha"
EMBARGOED_SHA = "embargoed_sha"
DIRTY_TREE = "dirty_tree"
# Aggregate rules.
NO_CONFIG = "no_config"
SEVERAL_CONFIGS = "several_configs"
MISSING_SEEDS = "missing_seeds"
SEED_NOT_BELOW_TARGET = "seed_not_below_target"
MEAN_NOT_BELOW_EFFECT = "mean_not_below_effect"
T_TEST_NOT_SIGNIFICANT = "t_test_not_significant"
WELCH_NOT_SIGNIFICANT = "welch_not_significant"

_HEX_RE = re.compile(r"^[0-9a-f]{7,64}$")
_FULL_RE = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")  # a full SHA-1 or SHA-256 commit id

Resolver = Callable[[str], str | None]  # row or embargo sha -> full commit id, or None


class VictoryError(ValueError):
    """An input to the victory predicate (embargo file, repository) is unusable."""


@dataclass(frozen=True)
class Verdict:
    """Outcome of `winning_seeds`: accepted only when `reasons` is empty."""
    accepted: bool
    config_id: str | None
    mean: float | None       # mean test_bpb of the rows that passed every row rule
    t_stat: float | None
    p_value: float | None
    welch_p: float | None
    reasons: tuple[str, ...]
    row_rejections: tuple[tuple[int, tuple[str, ...]], ...]  # (index into rows, reasons)
    seeds: tuple[int, ...] = ()  # seeds of the rows that passed every row rule
    test_bpbs: tuple[float, ...] = ()


def read_embargo(path: str | Path) -> frozenset[str]:
    """Embargo entries (lowercase hex, 7-64 digits) as written; '#' starts a comment, blank lines skipped."""
    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise VictoryError(f"{p}: cannot read the embargo file: {e}") from None
    out = set()
    for i, line in enumerate(lines, 1):
        s = line.split("#", 1)[0].strip().lower()
        if not s:
            continue
        if not _HEX_RE.match(s):
            raise VictoryError(f"{p}: line {i}: {s!r} is not a commit sha (7-64 hex digits)")
        out.add(s)
    return frozenset(out)


def git_resolver(repo_dir: str | Path) -> Resolver:
    """sha -> the full id of the one commit of repo_dir it names, or None (unknown, ambiguous, not a commit).

    Asks `git rev-parse --verify -q <sha>^{commit}`, only ever with 7-64 lowercase hex digits (no
    option or revision-syntax injection), and keeps the answer only if it is a full id that starts
    with the sha (so a branch or tag that happens to be named like hex cannot redirect it).
    """
    repo = Path(repo_dir)

    @functools.lru_cache(maxsize=None)
    def resolve(sha: str) -> str | None:
        if not isinstance(sha, str) or not _HEX_RE.match(sha):
            return None
        try:
            r = subprocess.run(["git", "-C", str(repo), "rev-parse", "--verify", "-q", f"{sha}^{{commit}}"],
                               capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            return None
        full = r.stdout.strip().lower()
        if r.returncode != 0 or not _FULL_RE.match(full) or not full.startswith(sha):
            return None
        return full

    return resolve


def resolve_embargo(entries: Iterable[str], resolve: Resolver, source: str = "embargo") -> frozenset[str]:
    """The embargo as full commit ids: each entry resolved like a row's sha.

    An entry that resolves to no commit is kept as a literal only when it is itself a full id (a
    commit this clone lacks, e.g. a shallow clone: a row from it is an unknown_sha here anyway);
    an abbreviated entry that names no commit, or several, raises VictoryError: it cannot be
    compared by full-id equality, and silently embargoing nothing would hide a typo.
    """
    out = set()
    for e in sorted(entries):
        full = resolve(e) if _HEX_RE.match(e) else None
        if full is not None:
            out.add(full)
        elif _FULL_RE.match(e):
            out.add(e)
        else:
            raise VictoryError(f"{source}: embargo entry {e!r} names no commit of this repository, or "
                               "several (ambiguous); write the full commit id")
    return frozenset(out)


def _as_dict(row: Any) -> Mapping[str, Any]:
    return row.to_dict() if hasattr(row, "to_dict") else row


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _row_reasons(row: Mapping[str, Any], prereg: Prereg, resolve: Resolver, embargo: frozenset[str],
                 require_clean: bool) -> list[str]:
    """Reasons why one row breaks the row rules (duplicate seeds are checked across rows)."""
    missing = [k for k in ("step", "seed", "sha") if k not in row]
    if missing:
        return [f"{MALFORMED_ROW}: missing field(s) {', '.join(missing)}"]
    out = []
    tb, step, seed, sha = row.get("test_bpb"), row["step"], row["seed"], row["sha"]
    lo, hi = prereg.bpb_band
    if tb is None:
        out.append(f"{TEST_BPB_MISSING}: row has no test_bpb (victory is judged on the test half, "
                   f"never on the validation bpb {row.get('bpb')!r})")
    elif not _finite(tb):
        out.append(f"{BPB_NONFINITE}: test_bpb {tb!r} is not a finite number")
    elif tb < lo:
        out.append(f"{BPB_BELOW_BAND}: test_bpb {tb} < plausible band low {lo}")
    elif tb > hi:
        out.append(f"{BPB_ABOVE_BAND}: test_bpb {tb} > plausible band high {hi}")
    if not isinstance(step, int) or isinstance(step, bool) or step < prereg.min_victory_step:
        out.append(f"{STEP_TOO_EARLY}: step {step!r} < min_victory_step {prereg.min_victory_step}")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed not in prereg.seeds:
        out.append(f"{SEED_OUTSIDE_SET}: seed {seed!r} not in {list(prereg.seeds)}")
    sha_s = sha.lower() if isinstance(sha, str) else ""
    full = resolve(sha_s) if _HEX_RE.match(sha_s) else None  # the resolver only ever sees hex
    if full is None:
        out.append(f"{UNKNOWN_SHA}: sha {sha!r} names no commit of this repository (or several)")
    elif full in embargo:
        out.append(f"{EMBARGOED_SHA}: sha {sha!r} is commit {full}, listed in the embargo file")
    if require_clean and row.get("dirty") is not False:
        out.append(f"{DIRTY_TREE}: row was produced from a dirty work tree (dirty={row.get('dirty')!r})")
    return out


def _stat_checks(x_KxN: np.ndarray, prereg: Prereg) -> dict[str, np.ndarray]:
    """Vectorised aggregate rules over K candidate triples (rows of x_KxN); True = passes."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t, p = scipy.stats.ttest_1samp(x_KxN, prereg.mu0, axis=1, alternative="less")
    mean = x_KxN.mean(axis=1)
    lo, hi = prereg.bpb_band
    return {
        "band": np.all((x_KxN >= lo) & (x_KxN <= hi), axis=1),
        "below_target": np.all(x_KxN < prereg.target_bpb, axis=1),
        "effect": mean <= prereg.mu0 - prereg.effect_size,
        "t_test": np.nan_to_num(p, nan=1.0) < prereg.alpha,
        "mean": mean, "t": np.asarray(t, float), "p": np.asarray(p, float),
    }


def aggregate_accepts(x_KxN: np.ndarray, prereg: Prereg) -> np.ndarray:
    """Per row of x_KxN (one candidate set of test BPBs, one per seed): does every aggregate rule pass?

    The rules are those `winning_seeds` applies once the row rules hold: each value inside
    bpb_band and below target_bpb, mean <= mu0 - effect_size, one-tailed one-sample t-test p < alpha.
    """
    c = _stat_checks(np.asarray(x_KxN, float), prereg)
    return c["band"] & c["below_target"] & c["effect"] & c["t_test"]


def _pick_config(rows: Sequence[Mapping[str, Any]], config_id: str | None) -> tuple[str | None, str | None]:
    """(config id, reason if none can be chosen) among rows with a victory status."""
    if config_id is not None:
        return config_id, None
    ids = sorted({r.get("config_id") for r in rows if r.get("status") in VICTORY_STATUSES}, key=repr)
    if not ids:
        return None, f"{NO_CONFIG}: no row with a victory status {sorted(VICTORY_STATUSES)}"
    if len(ids) > 1:
        return None, f"{SEVERAL_CONFIGS}: rows name {len(ids)} configs {ids[:5]}; pass config_id"
    return ids[0], None


def winning_seeds(rows: Iterable[Any], prereg: Prereg, *, repo_dir: str | Path | None = None,
                  embargo_path: str | Path | None = None, baseline_rows: Iterable[Any] | None = None,
                  config_id: str | None = None, resolve_commit: Resolver | None = None,
                  require_clean: bool = False) -> Verdict:
    """Decides whether rows prove a victory under the pre-registered rule (issue 4, prereg v2, issue 9).

    Only rows of one config (config_id, or the single config present) whose status is in
    VICTORY_STATUSES = {confirmed} count: from-scratch runs of the champion on each victory seed
    (the reproduce row never counts); pass one row per seed (`select_victory_rows`), since a
    repeated seed rejects both rows. Every BPB rule reads the row's test_bpb, never bpb.
    Row rules: test_bpb present (else test_bpb_missing), finite and inside prereg.bpb_band
    (inclusive); step >= prereg.min_victory_step; seed in prereg.seeds; no duplicate seed; the sha
    resolves to the full id of exactly one commit of repo_dir (`git_resolver`, or the injected
    resolve_commit), else unknown_sha; that full id is not one of the embargo file's entries, each
    resolved to its full id the same way (`resolve_embargo`; default file assertions/embargo.txt),
    so an abbreviated sha of an embargoed commit is embargoed too. require_clean also rejects rows
    with dirty != false.
    Aggregate: every prereg seed present and each test_bpb < target_bpb; mean <= mu0 - effect_size;
    one-tailed one-sample t-test of mean < mu0 with p < alpha (scipy.stats.ttest_1samp); if
    baseline_rows are given, their rows with a victory status, finite test_bpb and step >=
    min_victory_step form the baseline and a one-tailed Welch test (scipy.stats.ttest_ind,
    equal_var=False) on test_bpb must also give p < alpha.

    Returns:
      A Verdict; `reasons` lists every failed rule, `row_rejections` the reasons per row index.
    """
    rows = [_as_dict(r) for r in rows]
    repo = Path(repo_dir) if repo_dir is not None else repo_root()
    resolve = resolve_commit if resolve_commit is not None else git_resolver(repo)
    epath = Path(embargo_path) if embargo_path is not None else repo / "assertions" / "embargo.txt"
    embargo = resolve_embargo(read_embargo(epath), resolve, str(epath))
    reasons: list[str] = []
    cid, why = _pick_config(rows, config_id)
    if why:
        return Verdict(False, None, None, None, None, None, (why,), ())
    per_row: dict[int, list[str]] = {}
    counted = [i for i, r in enumerate(rows) if r.get("config_id") == cid and r.get("status") in VICTORY_STATUSES]
    for i, r in enumerate(rows):
        if i not in counted:
            per_row[i] = [f"not counted: config {r.get('config_id')!r} status {r.get('status')!r}"]
    for i in counted:
        per_row[i] = _row_reasons(rows[i], prereg, resolve, embargo, require_clean)
    by_seed: dict[Any, list[int]] = {}
    for i in counted:
        by_seed.setdefault(rows[i].get("seed"), []).append(i)
    for seed, idx in by_seed.items():
        if len(idx) > 1:
            for i in idx:
                per_row[i].append(f"{DUPLICATE_SEED}: seed {seed!r} appears in rows {idx}")
    for i in counted:
        for why in per_row[i]:
            reasons.append(f"row {i} (seed {rows[i].get('seed')!r}): {why}")
    good = sorted((i for i in counted if not per_row[i]), key=lambda i: rows[i]["seed"])
    seeds = tuple(rows[i]["seed"] for i in good)
    x = np.array([float(rows[i]["test_bpb"]) for i in good])
    missing = sorted(set(prereg.seeds) - set(seeds))
    if missing:
        reasons.append(f"{MISSING_SEEDS}: no valid row for seed(s) {missing}; need one per seed {list(prereg.seeds)}")
    mean = t = p = welch_p = None
    if x.size >= 2:
        c = _stat_checks(x[None, :], prereg)
        mean, t, p = float(c["mean"][0]), float(c["t"][0]), float(c["p"][0])
        for s, v in zip(seeds, x):
            if not v < prereg.target_bpb:
                reasons.append(f"{SEED_NOT_BELOW_TARGET}: seed {s} test_bpb {v} is not < target {prereg.target_bpb}")
        if not c["effect"][0]:
            reasons.append(f"{MEAN_NOT_BELOW_EFFECT}: mean test_bpb {mean:.6f} > mu0 - effect_size = "
                           f"{prereg.mu0 - prereg.effect_size:.6f}")
        if not c["t_test"][0]:
            reasons.append(f"{T_TEST_NOT_SIGNIFICANT}: one-sample t = {t:.4g}, one-tailed p = {p:.4g} "
                           f"is not < alpha {prereg.alpha} (H1: mean test_bpb < mu0 = {prereg.mu0})")
    elif x.size == 1:
        mean = float(x[0])
    if baseline_rows is not None:
        welch_p, why = _welch(x, [_as_dict(r) for r in baseline_rows], prereg)
        if why:
            reasons.append(why)
    rejections = tuple((i, tuple(per_row[i])) for i in sorted(per_row) if per_row[i])
    return Verdict(not reasons, cid, mean, t, p, welch_p, tuple(reasons), rejections, seeds,
                   tuple(float(v) for v in x))


def _welch(x: np.ndarray, baseline: list[Mapping[str, Any]], prereg: Prereg) -> tuple[float | None, str | None]:
    """One-tailed Welch p (victory mean < baseline mean, both on test_bpb) and a reason when it fails."""
    if not baseline:
        return None, None
    b = np.array([float(r["test_bpb"]) for r in baseline
                  if r.get("status") in VICTORY_STATUSES and _finite(r.get("test_bpb"))
                  and isinstance(r.get("step"), int) and r["step"] >= prereg.min_victory_step])
    if b.size < 2 or x.size < 2:
        return None, (f"{WELCH_NOT_SIGNIFICANT}: Welch test undefined: {b.size} usable baseline row(s) and "
                      f"{x.size} valid victory row(s); need >= 2 of each")
    with np.errstate(divide="ignore", invalid="ignore"):
        t, p = scipy.stats.ttest_ind(x, b, equal_var=False, alternative="less")
    p = float(p)
    if not (math.isfinite(p) and p < prereg.alpha):
        return p, (f"{WELCH_NOT_SIGNIFICANT}: Welch t = {float(t):.4g}, one-tailed p = {p:.4g} is not < alpha "
                   f"{prereg.alpha} (victory mean {x.mean():.4f} vs baseline mean {b.mean():.4f}, n={b.size})")
    return p, None


def select_victory_rows(rows: Iterable[Any], config_id: str) -> list[Mapping[str, Any]]:
    """For each seed, the LAST confirmed row of config_id (by ledger order, never the best; never a reproduce row)."""
    last: dict[Any, Mapping[str, Any]] = {}
    for r in map(_as_dict, rows):
        if r.get("config_id") == config_id and r.get("status") in VICTORY_STATUSES:
            last[r.get("seed")] = r
    return [last[s] for s in sorted(last, key=repr)]


def false_positive_rate(prereg: Prereg, *, sd: float, draws: int | None = None, seed: int = 0) -> float:
    """Fraction of null draws (true mean mu0, normal seed spread sd) that the aggregate rule accepts.

    Simulates len(prereg.seeds) independent test BPBs per draw and applies `aggregate_accepts`
    (band, each below target, effect size, t-test), as `winning_seeds` does. Row rules about
    provenance (sha, step, duplicates) are met by construction under the null.
    """
    n = prereg.null_sim_draws if draws is None else draws
    if n < prereg.null_sim_draws:
        raise ValueError(f"false_positive_rate: draws={n} is below the pre-registered null_sim_draws "
                         f"{prereg.null_sim_draws}")
    if not (math.isfinite(sd) and sd > 0):
        raise ValueError(f"false_positive_rate: sd must be a finite number > 0, got {sd!r}")
    rng = np.random.default_rng(seed)
    x = rng.normal(prereg.mu0, sd, size=(n, len(prereg.seeds)))
    return float(aggregate_accepts(x, prereg).mean())
