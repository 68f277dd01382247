"""The victory predicate: each rule rejects a violating row and accepts a valid triple."""
from __future__ import annotations

import dataclasses
import math
import os
import subprocess

import numpy as np
import pytest
import scipy.stats

from igla_jax.evidence import victory as V
from igla_jax.evidence.prereg import load_prereg

PR = load_prereg()
SHA = "0123456789abcdef0123456789abcdef01234567"
OTHER = "fedcba9876543210fedcba9876543210fedcba98"
KNOWN = {SHA, OTHER}
STEP = PR.rungs[-1]  # a full-preset final rung, >= min_victory_step
assert STEP >= PR.min_victory_step


def _resolver(known):
    """A fake `git rev-parse --verify <sha>^{commit}`: the one known id starting with sha, else None."""
    def resolve(sha: str):
        hits = [k for k in known if k.startswith(sha)]
        return hits[0] if len(hits) == 1 else None
    return resolve


def _good_bpbs() -> list[float]:
    """Three consistent values well below target and mu0 - effect_size (derived from the prereg)."""
    base = PR.mu0 - PR.effect_size - 0.1
    return [base - 0.002, base, base + 0.002]


def _rows(test_bpbs=None, **over) -> list[dict]:
    """Confirmed rows of one config on each victory seed; row 0 gets `over`.

    The validation bpb is deliberately above the target (and would fail the t-test): a triple is
    accepted only because victory judges test_bpb.
    """
    test_bpbs = _good_bpbs() if test_bpbs is None else test_bpbs
    rows = []
    for seed, b in zip(PR.seeds, test_bpbs):
        r = dict(run_id="r", config_id="champ", config={}, family="attn", seed=seed, step=STEP,
                 bpb=PR.mu0 + 0.2, test_bpb=b, status="confirmed", sha=SHA, dirty=False,
                 ts="2025-01-01T00:00:00+00:00")
        rows.append(r)
    for k, v in over.items():
        rows[0][k] = v
    return rows


@pytest.fixture
def embargo(tmp_path):
    p = tmp_path / "embargo.txt"
    p.write_text("# header\n\n" + OTHER[:10] + "  # leaked validation\n")
    return p


def _judge(rows, embargo, known=KNOWN, **kw):
    return V.winning_seeds(rows, PR, embargo_path=embargo, resolve_commit=_resolver(known), **kw)


def _rejects(rows, embargo, rule, **kw):
    valid = _judge(_rows(), embargo)
    assert valid.accepted, valid.reasons  # the valid triple is accepted ...
    v = _judge(rows, embargo, **kw)
    assert not v.accepted  # ... and the violating one rejected, naming the rule
    assert any(rule in r for r in v.reasons), v.reasons
    return v


def test_falsify_valid_triple_accepted(embargo):
    v = _judge(_rows(), embargo)
    assert v.accepted and v.reasons == () and v.row_rejections == ()
    assert v.config_id == "champ" and v.seeds == PR.seeds
    x = np.array(_good_bpbs())
    ref = scipy.stats.ttest_1samp(x, PR.mu0, alternative="less")
    assert v.mean == pytest.approx(x.mean(), abs=1e-12) and v.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    assert v.p_value < PR.alpha and v.welch_p is None


def test_falsify_bpb_below_band(embargo):
    v = _rejects(_rows(test_bpb=PR.bpb_band[0] - 0.01), embargo, V.BPB_BELOW_BAND)
    assert v.row_rejections[0][0] == 0


def test_falsify_bpb_above_band(embargo):
    _rejects(_rows(test_bpb=PR.bpb_band[1] + 0.01), embargo, V.BPB_ABOVE_BAND)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "1.2"])
def test_falsify_nonfinite_bpb(embargo, bad):
    _rejects(_rows(test_bpb=bad), embargo, V.BPB_NONFINITE)


def test_falsify_test_bpb_missing(embargo):
    # A row with a fine validation bpb but no test_bpb is rejected; it never falls back to bpb.
    good_val = _good_bpbs()[0]
    _rejects(_rows(test_bpb=None, bpb=good_val), embargo, V.TEST_BPB_MISSING)
    rows = _rows(bpb=good_val)
    del rows[0]["test_bpb"]
    v = _rejects(rows, embargo, V.TEST_BPB_MISSING)
    assert any(V.MISSING_SEEDS in r for r in v.reasons)


def test_falsify_judges_test_bpb_not_validation_bpb(embargo):
    # Validation bpb far below target on every seed, test_bpb above it on one: rejected.
    rows = [dict(r, bpb=PR.target_bpb - 0.3) for r in _rows()]
    rows[0]["test_bpb"] = PR.target_bpb + 0.01
    v = _rejects(rows, embargo, V.SEED_NOT_BELOW_TARGET)
    assert v.test_bpbs[0] == PR.target_bpb + 0.01
    # and _rows() itself carries validation bpbs above the target: accepted on test_bpb alone
    assert all(r["bpb"] > PR.target_bpb for r in _rows()) and _judge(_rows(), embargo).accepted


def test_band_edges_are_inclusive(embargo):
    v = _judge(_rows(test_bpb=PR.bpb_band[0]), embargo)
    assert not any(V.BPB_BELOW_BAND in r for r in v.reasons)


def test_falsify_step_too_early(embargo):
    _rejects(_rows(step=PR.min_victory_step - 1), embargo, V.STEP_TOO_EARLY)
    assert _judge(_rows(step=PR.min_victory_step), embargo).accepted  # the boundary itself counts


def test_falsify_seed_outside_set(embargo):
    outside = max(PR.seeds) + 1
    v = _rejects(_rows(seed=outside), embargo, V.SEED_OUTSIDE_SET)
    assert any(V.MISSING_SEEDS in r for r in v.reasons)


def test_falsify_duplicate_seed(embargo):
    rows = _rows()
    rows.append(dict(rows[1]))  # a second confirmed row for the same seed
    v = _rejects(rows, embargo, V.DUPLICATE_SEED)
    assert {i for i, _ in v.row_rejections} == {1, 3}


def test_falsify_reproduced_row_never_counts(embargo):
    # pre-registration v2: the reproduce row (the selected run re-run) is evidence only.
    v = _rejects(_rows(status="reproduced"), embargo, V.MISSING_SEEDS)
    assert dict(v.row_rejections)[0][0].startswith("not counted")
    assert V.VICTORY_STATUSES == frozenset({"confirmed"})


def test_falsify_unknown_sha(embargo):
    _rejects(_rows(sha="1111111111111111111111111111111111111111"), embargo, V.UNKNOWN_SHA)
    _rejects(_rows(sha="unknown"), embargo, V.UNKNOWN_SHA)
    _rejects(_rows(sha="--help"), embargo, V.UNKNOWN_SHA)
    _rejects(_rows(sha=SHA[:6]), embargo, V.UNKNOWN_SHA)  # below 7 hex digits: never resolved
    # An abbreviation that names two commits is ambiguous: unknown, not whichever git would pick.
    twin = SHA[:8] + "f" * 32
    v = _judge(_rows(sha=SHA[:8]), embargo, known=KNOWN | {twin})
    assert not v.accepted and any(V.UNKNOWN_SHA in r for r in v.reasons), v.reasons
    assert _judge(_rows(sha=SHA[:9]), embargo, known=KNOWN | {twin}).accepted


def test_falsify_embargoed_sha(embargo):
    _rejects(_rows(sha=OTHER), embargo, V.EMBARGOED_SHA)


@pytest.mark.parametrize("abbrev", [OTHER[:7], OTHER[:12], OTHER[:9].upper()])
def test_falsify_abbreviated_embargoed_sha(embargo, abbrev):
    # Before issue 9 a row sha shorter than the embargo entry (or not prefixed by it) slipped through.
    v = _rejects(_rows(sha=abbrev), embargo, V.EMBARGOED_SHA)
    assert OTHER in " ".join(v.reasons)  # named by its full id


def test_embargo_entries_resolve_or_error(tmp_path):
    p = tmp_path / "e.txt"
    p.write_text(SHA[:7] + "\n")  # an abbreviated entry embargoes its commit
    v = V.winning_seeds(_rows(), PR, embargo_path=p, resolve_commit=_resolver(KNOWN))
    assert not v.accepted and any(V.EMBARGOED_SHA in r for r in v.reasons)
    p.write_text("abcdef0\n")  # abbreviated and names no commit: an error, not a silent no-op
    with pytest.raises(V.VictoryError, match="names no commit"):
        V.winning_seeds(_rows(), PR, embargo_path=p, resolve_commit=_resolver(KNOWN))
    absent = "ab" * 20  # a full id this clone lacks (e.g. shallow): kept as a literal full id
    p.write_text(absent + "\n")
    assert V.resolve_embargo(V.read_embargo(p), _resolver(KNOWN)) == {absent}
    assert V.winning_seeds(_rows(), PR, embargo_path=p, resolve_commit=_resolver(KNOWN)).accepted


def test_falsify_dirty_tree_when_required(embargo):
    assert _judge(_rows(dirty=True), embargo).accepted  # not a rule by default
    _rejects(_rows(dirty=True), embargo, V.DIRTY_TREE, require_clean=True)


def test_falsify_mean_not_below_target(embargo):
    # One seed just above the target: that seed fails; mean and t-test also fail here.
    v = _rejects(_rows([PR.target_bpb + 0.01, PR.target_bpb - 0.1, PR.target_bpb - 0.1]), embargo,
                 V.SEED_NOT_BELOW_TARGET)
    assert v.mean is not None


def test_falsify_mean_not_below_effect_size(embargo):
    # Every seed below target but the mean above mu0 - effect_size (possible when target > mu0 - effect).
    pr = dataclasses.replace(PR, target_bpb=PR.mu0)
    x = [PR.mu0 - PR.effect_size / 2 - d for d in (0.001, 0.0, -0.001)]
    rows = _rows(x)
    ok = V.winning_seeds(_rows(), pr, embargo_path=embargo, resolve_commit=_resolver(KNOWN))
    assert ok.accepted, ok.reasons
    v = V.winning_seeds(rows, pr, embargo_path=embargo, resolve_commit=_resolver(KNOWN))
    assert not v.accepted and any(r.startswith(V.MEAN_NOT_BELOW_EFFECT) for r in v.reasons), v.reasons


def test_falsify_t_test_not_significant(embargo):
    # Mean below mu0 - effect and every seed below target, but the spread is too wide for df=2 at alpha.
    x = [PR.target_bpb - 0.05, PR.target_bpb - 0.01, PR.target_bpb - 0.001]
    assert all(b < PR.target_bpb for b in x) and np.mean(x) <= PR.mu0 - PR.effect_size
    v = _rejects(_rows(x), embargo, V.T_TEST_NOT_SIGNIFICANT)
    assert v.p_value >= PR.alpha


def test_falsify_missing_seed(embargo):
    _rejects(_rows()[:2], embargo, V.MISSING_SEEDS)


def test_falsify_only_victory_statuses_count(embargo):
    rows = _rows()
    rows[2]["status"] = "pruned"
    v = _rejects(rows, embargo, V.MISSING_SEEDS)
    assert dict(v.row_rejections)[2][0].startswith("not counted")


def test_falsify_several_configs(embargo):
    rows = _rows()
    rows[2]["config_id"] = "other"
    v = _rejects(rows, embargo, V.SEVERAL_CONFIGS)
    assert not _judge(rows, embargo, config_id="champ").accepted  # the champ has only two seeds there
    assert _judge(_rows() + [dict(rows[2])], embargo, config_id="champ").accepted
    assert v.config_id is None


def test_falsify_welch_against_baseline(embargo):
    # Baseline rows are judged on test_bpb too; their validation bpb (below the champion's) is ignored.
    good = [dict(r, config_id="base", test_bpb=PR.mu0 + d, bpb=0.9) for r, d in zip(_rows(), (-0.01, 0.0, 0.01))]
    v = _judge(_rows(), embargo, baseline_rows=good)
    assert v.accepted and v.welch_p is not None and v.welch_p < PR.alpha, v.reasons
    ref = scipy.stats.ttest_ind(_good_bpbs(), [r["test_bpb"] for r in good], equal_var=False, alternative="less")
    assert v.welch_p == pytest.approx(ref.pvalue, rel=1e-9)
    # A baseline as good as the champion: Welch fails although the one-sample test passes.
    close = [dict(r, config_id="base", test_bpb=b + 0.001) for r, b in zip(_rows(), _good_bpbs())]
    _rejects(_rows(), embargo, V.WELCH_NOT_SIGNIFICANT, baseline_rows=close)
    # Baseline rows measured too early, or without a test_bpb, do not count: Welch is undefined and rejects.
    early = [dict(r, step=PR.min_victory_step - 1) for r in good]
    _rejects(_rows(), embargo, V.WELCH_NOT_SIGNIFICANT, baseline_rows=early)
    untested = [dict(r, test_bpb=None) for r in good]
    _rejects(_rows(), embargo, V.WELCH_NOT_SIGNIFICANT, baseline_rows=untested)


def test_embargo_file_errors(tmp_path):
    p = tmp_path / "e.txt"
    p.write_text("# ok\nnot-a-sha\n")
    with pytest.raises(V.VictoryError, match="line 2"):
        V.read_embargo(p)
    with pytest.raises(V.VictoryError, match="cannot read"):
        V.read_embargo(tmp_path / "missing.txt")


def test_repo_embargo_file_parses():
    assert isinstance(V.read_embargo(V.repo_root() / "assertions" / "embargo.txt"), frozenset)


def _git_repo(path):
    """A fresh repository at path with two empty commits; returns (run, first sha, second sha)."""
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t", "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(path)}
    run = lambda *a: subprocess.run(["git", "-C", str(path), *a], check=True, capture_output=True,
                                    text=True, env=env).stdout.strip()
    run("init", "-q")
    run("commit", "-q", "--allow-empty", "-m", "leaky")
    first = run("rev-parse", "HEAD")
    run("commit", "-q", "--allow-empty", "-m", "clean")
    return run, first, run("rev-parse", "HEAD")


@pytest.mark.parametrize("entry_len", [40, 7])
def test_sha_rule_with_real_git(tmp_path, entry_len):
    repo = tmp_path / "repo"
    repo.mkdir()
    run, leaky, clean = _git_repo(repo)
    embargo = tmp_path / "embargo.txt"
    embargo.write_text(leaky[:entry_len] + "  # leaked validation\n")
    judge = lambda sha: V.winning_seeds([dict(r, sha=sha) for r in _rows()], PR, repo_dir=repo, embargo_path=embargo)
    for sha in (leaky, leaky[:7], leaky[:12].upper()):  # full and abbreviated: both embargoed
        v = judge(sha)
        assert not v.accepted and any(V.EMBARGOED_SHA in r for r in v.reasons), (sha, v.reasons)
    for sha in (clean, clean[:7]):  # the other commit, full or abbreviated, is accepted
        v = judge(sha)
        assert v.accepted, (sha, v.reasons)
    tree = run("rev-parse", "HEAD^{tree}")  # an object of the repo that is not a commit
    for sha in (tree, "1" * 40, "--all", "HEAD"):
        v = judge(sha)
        assert not v.accepted and any(V.UNKNOWN_SHA in r for r in v.reasons), (sha, v.reasons)


def test_git_resolver_only_hands_git_hex(tmp_path):
    run, leaky, clean = _git_repo(tmp_path)
    resolve = V.git_resolver(tmp_path)
    assert resolve(leaky[:7]) == leaky and resolve(clean) == clean
    run("branch", "abcdef0", leaky)  # a branch named like hex must not redirect the lookup ...
    assert run("rev-parse", "--verify", "-q", "abcdef0^{commit}") == leaky  # ... as git itself would
    assert resolve("abcdef0") is None
    assert [resolve(s) for s in ("HEAD", "--help", leaky[:6], "", leaky[:7] + "^")] == [None] * 5


def test_select_victory_rows_takes_last_confirmed_not_best():
    rows = _rows()
    later = dict(rows[1], test_bpb=rows[1]["test_bpb"] + 0.05)
    noise = [dict(rows[2], status="trained", test_bpb=0.9), dict(rows[0], status="reproduced", test_bpb=0.9)]
    picked = V.select_victory_rows(rows + noise + [later], "champ")
    assert [r["seed"] for r in picked] == list(PR.seeds)
    assert picked[1]["test_bpb"] == later["test_bpb"]
    assert all(r["status"] == "confirmed" for r in picked) and picked[0]["test_bpb"] == rows[0]["test_bpb"]


# Statistical checks. The estimate of a rate p from n draws has standard error sqrt(p(1-p)/n):
# at p = alpha = 0.01 and n = 40,000 that is 0.0005, so 4 SE = 0.002 (a 20 % relative tolerance,
# the "few percent" absolute band of a statistical claim, and a 1-in-15,000 chance of a false alarm).
FPR_DRAWS = 40_000
FPR_TOL = 4 * math.sqrt(PR.alpha * (1 - PR.alpha) / FPR_DRAWS)


@pytest.mark.parametrize("sd", [0.01, 0.03, 0.1])
def test_false_positive_rate_under_null_at_most_alpha(sd):
    # At the real prereg; at small sd the target rule alone keeps this near 0, so it is only an upper
    # bound: the next test is the one that checks the t-test.
    rate = V.false_positive_rate(PR, sd=sd)
    assert 0.0 <= rate <= PR.alpha + FPR_TOL


def _t_test_only(pr):
    """pr with every rule but the t-test made unable to bind (band, target and effect wide open)."""
    return dataclasses.replace(pr, effect_size=0.0, target_bpb=1e9, bpb_band=(-1e9, 1e9))


@pytest.mark.parametrize("sd", [0.01, 0.03, 0.3])
def test_falsify_t_test_alone_holds_alpha(sd):
    # Only the t-test guards here; under the null it rejects at exactly alpha (normal data, exact t),
    # so the simulated rate must be alpha within 4 SE.
    loose = _t_test_only(PR)
    rate = V.false_positive_rate(loose, sd=sd, draws=FPR_DRAWS, seed=1)
    assert abs(rate - PR.alpha) <= FPR_TOL, rate
    # Drop the t-test (alpha = 1: every finite p passes) and the same assertion fails: half the
    # null draws have a mean below mu0, the only rule left.
    dropped = V.false_positive_rate(dataclasses.replace(loose, alpha=1.0), sd=sd, draws=FPR_DRAWS, seed=1)
    assert abs(dropped - PR.alpha) > FPR_TOL and dropped == pytest.approx(0.5, abs=0.02)


def test_power_under_a_real_effect():
    # Sanity: a true mean 0.05 below mu0 - effect_size with sd 0.01 is accepted almost always.
    rng = np.random.default_rng(0)
    x = rng.normal(PR.mu0 - PR.effect_size - 0.05, 0.01, size=(2000, len(PR.seeds)))
    assert V.aggregate_accepts(x, PR).mean() > 0.9


def test_false_positive_rate_rejects_too_few_draws():
    with pytest.raises(ValueError, match="null_sim_draws"):
        V.false_positive_rate(PR, sd=0.03, draws=PR.null_sim_draws - 1)
    with pytest.raises(ValueError, match="sd"):
        V.false_positive_rate(PR, sd=0.0)
