import types

from accelerators.mup_sampler import MupTransferSampler, load_coord_check
from accelerators.mup_transfer import load_study, mup_verdict
from igla_jax.interfaces import RandomSampler
from igla_jax.prereg import repo_root
from igla_jax.search_space import DEFAULT_SPACE
from igla_jax.verdict import Verdict

STUDY = load_study()


def _race(seen=()):
    return types.SimpleNamespace(seen_ids=frozenset(seen))


def test_enabled_v1_sets_lr_and_beta1_from_the_proxy_sweep():
    s = MupTransferSampler(RandomSampler(DEFAULT_SPACE), Verdict(True, 0.05, 0.1, "ok"), STUDY)
    best = STUDY["families"]["attn"]["mup"]["proxy"]["best"]
    prop = s.propose(s.init(42), _race(), "attn", 5)
    assert len(prop.configs) == 5 and len({c.config_id for c in prop.configs}) == 5
    assert all(c.lr == best["lr"] and c.beta == best["beta1"] for c in prop.configs)
    assert prop.verdict.enabled and prop.extra_verdicts[0][0] == "random"
    jepa = s.propose(s.init(42), _race(), "jepa", 3).configs
    assert all(c.lr == STUDY["families"]["jepa"]["mup"]["proxy"]["best"]["lr"] for c in jepa)
    assert {c.beta for c in jepa} <= set(DEFAULT_SPACE.ema_beta)   # jepa keeps its EMA-beta lever


def test_falsify_disabled_v1_falls_back_to_sweeping_lr():
    base = RandomSampler(DEFAULT_SPACE)
    s = MupTransferSampler(base, Verdict(False, 0.4, 0.1, "slope too steep"), STUDY)
    prop = s.propose(s.init(42), _race(), "attn", 12)
    want = base.propose(base.init(42), _race(), "attn", 12)
    assert prop.configs == want.configs and not prop.verdict.enabled
    assert len({c.lr for c in prop.configs}) > 1


def test_committed_coord_checks_give_the_recorded_verdicts():
    sp = mup_verdict(load_coord_check(repo_root() / "coord_check/plots/coord_check_sp.json"))
    assert not sp.enabled and sp.statistic >= sp.threshold
    mup = mup_verdict(load_coord_check(repo_root() / "coord_check/plots/coord_check_mup.json"))
    # golden: the committed muP coord check (widths 8-64) fails the bound; update with the JSON
    assert not mup.enabled and mup.statistic == 0.3909 and "jepa/readout/logits" in mup.reason
