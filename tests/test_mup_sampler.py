import copy
import types

from accelerators.mup_sampler import MupTransferSampler, load_coord_check
from accelerators.mup_transfer import load_study, mup_verdict
from igla_jax.evidence.prereg import repo_root
from igla_jax.evidence.verdict import Verdict
from igla_jax.search.interfaces import RandomSampler
from igla_jax.search.search_space import DEFAULT_SPACE

STUDY = load_study()


def _race(seen=()):
    return types.SimpleNamespace(seen_ids=frozenset(seen))


def _study_with(best_by_family):
    """A copy of the committed study whose proxy optima are values no grid contains (so a sampler that
    ignored the study, or read another file, could not match them by chance)."""
    study = copy.deepcopy(STUDY)
    for fam, (lr, b1) in best_by_family.items():
        study["families"][fam]["mup"]["proxy"]["best"].update(lr=lr, beta1=b1)
    return study


def test_enabled_v1_sets_lr_and_beta1_from_the_proxy_sweep():
    study = _study_with({"attn": (7.7e-3, 0.77), "jepa": (1.3e-3, 0.71)})
    s = MupTransferSampler(RandomSampler(DEFAULT_SPACE), Verdict(True, 0.05, 0.1, "ok"), study)
    prop = s.propose(s.init(42), _race(), "attn", 5)
    assert len(prop.configs) == 5 and len({c.config_id for c in prop.configs}) == 5
    assert all(c.lr == 7.7e-3 and c.beta == 0.77 for c in prop.configs)
    assert prop.verdict.enabled and prop.extra_verdicts[0][0] == "random"
    jepa = s.propose(s.init(42), _race(), "jepa", 3).configs
    assert all(c.lr == 1.3e-3 for c in jepa)
    assert {c.beta for c in jepa} <= set(DEFAULT_SPACE.ema_beta)   # jepa keeps its EMA-beta lever


def test_committed_study_optima_golden():
    # golden: the committed width-16 proxy optima (assertions/mup_transfer.json); update only with a new study
    got = {f: (STUDY["families"][f]["mup"]["proxy"]["best"]["lr"], STUDY["families"][f]["mup"]["proxy"]["best"]["beta1"])
           for f in ("attn", "jepa", "hybrid")}
    assert got == {"attn": (0.01, 0.6), "jepa": (0.01, 0.6), "hybrid": (0.005, 0.6)}


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
