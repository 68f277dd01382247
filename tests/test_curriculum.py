"""V7 online curriculum: selection in the trainer, its state (determinism, resume, population), causality,
the default program untouched, config ids, the falsifier and the race wiring."""
from __future__ import annotations

import dataclasses
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import tiny_model, tiny_train
from igla_jax.evidence.prereg import load_prereg, repo_root
from igla_jax.evidence.verdict import Verdict
from igla_jax.search.search_space import Config, SearchSpaceError, config_from_dict
from igla_jax.training import checkpoint as ckpt, data
from igla_jax.training.step import (CurriculumConfig, TrainConfig, curriculum_select, init_state, train_chunk,
                                    validation_bpb)
from igla_jax.training.train import run_population, run_trial, train_state_to

PR = load_prereg()
CUR = CurriculumConfig.from_prereg(PR)


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree_util.tree_leaves(tree)]


def _same_bits(a, b) -> bool:
    la, lb = _leaves(a), _leaves(b)
    return len(la) == len(lb) and all(x.dtype == y.dtype and np.array_equal(x, y) for x, y in zip(la, lb))


def test_prereg_constants_reach_the_trainer():
    assert (CUR.factor, CUR.quantile) == (PR.curriculum_candidate_factor, PR.curriculum_quantile)
    with pytest.raises(Exception, match="factor"):
        CurriculumConfig(1, 0.5)
    with pytest.raises(Exception, match="curriculum"):
        TrainConfig(curriculum="on")


# ---------------------------------------------------------------- the selection rule
def test_selection_keeps_unlearned_in_draw_order_then_the_hardest_learned():
    cfg, tc = tiny_model(), tiny_train(curriculum=CUR)
    st = init_state(cfg, tc)
    train_N = jnp.asarray(data.splits()[0])
    select = jax.jit(curriculum_select, static_argnums=2)
    x, y, cur, idx = select(st, train_N, 4)
    assert x.shape == y.shape == (4, cfg.context) and idx.shape == (4,)
    # recompute the candidates and their losses by hand
    from igla_jax.training.models import logits_fn
    xc, yc = data.get_batch(train_N, tc.seed, 0, batch=8, context=cfg.context)
    loss = np.asarray(jnp.mean(data.token_bits(logits_fn(st.cfg, st.params, xc), yc), axis=-1))
    thr = np.quantile(loss, CUR.quantile)      # step 0: the batch's own quantile
    above = np.flatnonzero(loss >= thr)
    below = sorted(np.flatnonzero(loss < thr), key=lambda i: -loss[i])
    want = sorted((list(above) + below)[:4]) if len(above) < 4 else sorted(above[:4])
    assert np.asarray(idx).tolist() == want
    np.testing.assert_array_equal(np.asarray(x), np.asarray(xc)[want])
    assert float(cur.q) == pytest.approx(float(thr), rel=1e-6) and int(cur.seen) == 1
    assert int(cur.below_cand) == int(np.sum(loss < thr))
    # later steps compare with the running quantile, which the state carries
    st2 = st.replace(step=jnp.asarray(5, jnp.int32), curriculum=cur.replace(q=jnp.float32(-1.0)))
    _, _, cur2, _ = select(st2, train_N, 4)
    assert int(cur2.below_cand) == int(cur.below_cand)     # threshold -1: no candidate is "learned"
    assert float(cur2.q) != float(cur.q) and int(cur2.seen) == 2


# ---------------------------------------------------------------- state: determinism, resume, population
# One model shape (tiny attn; dropout is traced) throughout: every compiled program is shared between tests.
def test_curriculum_training_is_deterministic_and_not_the_default():
    cfg = tiny_model("attn", dropout=0.1)
    a, _, _ = train_state_to(init_state(cfg, tiny_train(curriculum=CUR)), tiny_train(curriculum=CUR), 40)
    b, _, _ = train_state_to(init_state(cfg, tiny_train(curriculum=CUR)), tiny_train(curriculum=CUR), 40)
    off, _, _ = train_state_to(init_state(cfg, tiny_train()), tiny_train(), 40)
    assert _same_bits(a, b)                              # same seed, same bits (curriculum state included)
    assert not _same_bits(a.params, off.params)
    assert int(a.curriculum.seen) == 40 and off.curriculum is None
    r = run_trial(cfg, tiny_train(curriculum=CUR), to_step=40)
    assert r.candidate_tokens == 40 * CUR.factor * 4 * cfg.context
    assert 0.0 <= r.learned_trained <= r.learned_candidates <= 1.0
    assert run_trial(cfg, tiny_train(), to_step=8).candidate_tokens == 0


def test_resume_from_checkpoint_is_bit_exact(tmp_path):
    cfg, tc = tiny_model("attn", dropout=0.1), tiny_train(total_steps=70, curriculum=CUR)
    full, _, _ = train_state_to(init_state(cfg, tc), tc, 70)
    run_trial(cfg, tc, to_step=29, save_checkpoint=tmp_path / "k.ckpt")
    restored = ckpt.restore(tmp_path / "k.ckpt", init_state(cfg, tc), cfg, tc)
    assert int(restored.step) == 29 and int(restored.curriculum.seen) == 29
    resumed, _, _ = train_state_to(restored, tc, 70)
    assert _same_bits(full, resumed)
    # a curriculum checkpoint is not resumed without the curriculum, nor the reverse
    with pytest.raises(ckpt.CheckpointError, match="train_cfg"):
        run_trial(cfg, tiny_train(total_steps=70), to_step=40, from_checkpoint=tmp_path / "k.ckpt")


def test_old_format_2_checkpoint_still_restores(tmp_path):
    import flax.serialization
    cfg, tc = tiny_model(), tiny_train()
    run_trial(cfg, tc, to_step=8, save_checkpoint=tmp_path / "new.ckpt")
    blob = flax.serialization.msgpack_restore((tmp_path / "new.ckpt").read_bytes())
    assert blob["format"] == ckpt.FORMAT == 3 and '"curriculum"' not in blob["train_cfg"]
    del blob["state"]["curriculum"]                         # what format 2 wrote
    blob["format"] = 2
    (tmp_path / "old.ckpt").write_bytes(flax.serialization.msgpack_serialize(blob))
    a = ckpt.restore(tmp_path / "old.ckpt", init_state(cfg, tc), cfg, tc)
    b = ckpt.restore(tmp_path / "new.ckpt", init_state(cfg, tc), cfg, tc)
    assert a.curriculum is None and _same_bits(a, b)


def test_population_equals_one_by_one():
    cfg = tiny_model("attn")
    # lr 3e-3: at 1e-2 this tiny attn is chaotic and the batched matmuls' float reassociation grows to 5e-5 BPB
    # in 40 steps even without the curriculum (measured; 4.5e-4 with it); at 3e-3 both agree to 2e-8
    tcs = [tiny_train(seed=100, lr=3e-3, curriculum=CUR), tiny_train(seed=101, lr=3e-3, beta1=0.8, curriculum=CUR)]
    pop = run_population(cfg, tcs, to_step=40)
    for p, tc in zip(pop, tcs):
        solo = run_trial(cfg, tc, to_step=40)
        assert abs(p.val_bpb - solo.val_bpb) < 1e-5       # float reassociation only (as tests/test_train.py)
        assert p.candidate_tokens == solo.candidate_tokens
        assert abs(p.learned_candidates - solo.learned_candidates) <= 2 / (40 * 8)   # a near-tie may flip
    from igla_jax.training.models import ConfigError
    with pytest.raises(ConfigError, match="curriculum"):
        run_population(cfg, [tiny_train(), tiny_train(curriculum=CUR)], to_step=4)


# ---------------------------------------------------------------- off = the default program, unchanged
def test_off_is_the_unchanged_default_program():
    """A recorded curve-table run (written by the pre-V7 trainer) is reproduced bit for bit, and the
    default program contains none of the curriculum's operations. Update only if the table is re-recorded."""
    rows = [json.loads(line) for line in (repo_root() / "assertions" / "curves_tenth.jsonl").open()]
    row = next(r for r in rows if r["seed_role"] == "primary" and r["config"] == {
        "family": "attn", "width": 32, "depth": 1, "lr": 0.003, "beta": 0.8, "warmup": 0.02, "wd": 0.0, "dropout": 0.0})
    cfg = config_from_dict(row["config"])
    assert cfg.config_id == row["config_id"] and not cfg.curriculum
    mc, tc = cfg.to_model_config(context=64, head_dim=32), cfg.to_train_config(seed=row["seed"], total_steps=2700,
                                                                                batch=12)
    assert tc.curriculum is None
    st, _, _ = train_state_to(init_state(mc, tc), tc, row["ladder"][0])
    assert validation_bpb(st) == row["val_bpb"][0]
    train_N = jnp.asarray(data.splits()[0])
    small = tiny_model()
    off = str(jax.make_jaxpr(lambda s: train_chunk.__wrapped__(s, train_N, jnp.int32(8), batch=4))(
        init_state(small, tiny_train())))
    on = str(jax.make_jaxpr(lambda s: train_chunk.__wrapped__(s, train_N, jnp.int32(8), batch=4))(
        init_state(small, tiny_train(curriculum=CUR))))
    assert " sort[" in on and " sort[" not in off


def test_config_id_unchanged_when_off_and_its_own_when_on():
    c = Config("hybrid", 64, 2, 1e-3, 0.8, 0.0, 0.05, 0.2)
    assert c.config_id == "788cf61c1d87" and "curriculum" not in c.to_dict()   # golden of test_search_space
    on = dataclasses.replace(c, curriculum=True)
    assert on.config_id != c.config_id and on.to_dict() == {**c.to_dict(), "curriculum": True}
    assert config_from_dict(on.to_dict()) == on and config_from_dict(c.to_dict()) == c
    assert on.to_train_config(seed=1, total_steps=10, batch=4).curriculum == CUR
    assert c.to_train_config(seed=1, total_steps=10, batch=4).curriculum is None
    assert on.short().endswith("+curriculum")
    with pytest.raises(SearchSpaceError, match="omits the key"):
        config_from_dict({**c.to_dict(), "curriculum": False}, source="row 3")
    # every recorded config keeps its id
    rows = [json.loads(line) for line in (repo_root() / "assertions" / "curves_tenth.jsonl").open()]
    assert all(config_from_dict(r["config"]).config_id == r["config_id"] for r in rows)


# ---------------------------------------------------------------- causality
def test_selection_reads_training_bytes_only(monkeypatch):
    """Poisoned validation and test bytes change nothing the curriculum chooses or trains."""
    cfg, tc = tiny_model(), tiny_train(curriculum=CUR)
    select = jax.jit(curriculum_select, static_argnums=2)

    def run():
        data.clear_caches()
        train_N = jnp.asarray(data.splits()[0])
        st, chosen = init_state(cfg, tc), []
        for _ in range(6):
            _, _, cur, idx = select(st, train_N, 4)
            chosen.append(np.asarray(idx).tolist())
            st = st.replace(step=st.step + 1, curriculum=cur)
        trained, _, _ = train_state_to(init_state(cfg, tc), tc, 24)
        return chosen, trained, validation_bpb(trained)

    clean = run()
    real = data.corpus()
    a = data.split_index(real.size)
    poisoned = real.copy()
    poisoned[a:] = np.random.default_rng(0).integers(0, 256, real.size - a, dtype=np.uint8)
    monkeypatch.setattr(data, "corpus", lambda: poisoned)
    try:
        dirty = run()
    finally:
        monkeypatch.undo()
        data.clear_caches()
    assert clean[0] == dirty[0]                        # the same candidates chosen at every step
    assert _same_bits(clean[1], dirty[1])              # the same parameters and selection state
    assert clean[2] != dirty[2]                        # while anything reading held-out bytes does see the poison


# ---------------------------------------------------------------- the falsifier
def _study(base_sd: float, cur_sd: float, gain: float, *, configs: int = 3, seeds: int = 8, const: bool = False):
    """A synthetic study: per config a mean, the seeds' deviations (+-1 alternating when const, else fixed normal
    draws) scaled by each arm's sd; the curriculum's wall-clock BPB lower by `gain` (paired noise 0.005)."""
    from accelerators.curriculum import CurriculumStudy
    rng = np.random.default_rng(7)
    bs, cs, bw, cw = [], [], [], []
    for k in range(configs):
        z = np.where(np.arange(seeds) % 2, 1.0, -1.0) if const else rng.standard_normal(seeds)
        m = 2.6 + 0.1 * k
        b = m + base_sd * z
        c = m + cur_sd * (z if const else rng.standard_normal(seeds))
        bs.append(tuple(b)), cs.append(tuple(c))
        bw.append(tuple(b)), cw.append(tuple(b - gain + 0.005 * rng.standard_normal(seeds)))
    return CurriculumStudy(tuple(f"c{k}" for k in range(configs)), tuple(bs), tuple(cs), tuple(bw), tuple(cw))


def test_falsify_curriculum_variance():
    from accelerators.curriculum import curriculum_verdict, pooled_variance_ratio
    bad = _study(0.02, 0.02 * math.sqrt(3.0), 0.05, const=True)        # variance x3 over 8 seeds, with a gain
    assert pooled_variance_ratio(bad.cur_steps, bad.base_steps) == pytest.approx(3.0)
    v = curriculum_verdict(bad, PR)
    assert not v.enabled and v.statistic < v.threshold == PR.alpha_per_arm and "variance falsified" in v.reason
    ok = _study(0.02, 0.02, 0.05, const=True)                        # same variance, same gain
    v = curriculum_verdict(ok, PR)
    assert v.enabled and "V7 enabled" in v.reason, v.reason
    within = _study(0.02, 0.02 * math.sqrt(1.4), 0.05, const=True)   # +40 %: inside the allowed +50 %
    assert curriculum_verdict(within, PR).enabled


def test_no_gain_study_is_disabled_and_a_good_one_enabled():
    from accelerators.curriculum import curriculum_verdict
    v = curriculum_verdict(_study(0.02, 0.02, 0.0), PR)
    assert not v.enabled and "no gain" in v.reason
    v = curriculum_verdict(_study(0.02, 0.02, -0.03), PR)             # curriculum worse
    assert not v.enabled and "no gain" in v.reason
    v = curriculum_verdict(_study(0.02, 0.02, 0.03), PR)
    assert v.enabled and v.statistic < PR.alpha_per_arm
    small = curriculum_verdict(_study(0.02, 0.02, 0.03, seeds=4), PR)  # below the pre-registered design
    assert not small.enabled and "not judged" in small.reason
    s = _study(0.02, 0.02, 0.03)
    diverged = dataclasses.replace(s, cur_steps=(s.cur_steps[0][:-1] + (math.nan,),) + s.cur_steps[1:])
    assert not curriculum_verdict(diverged, PR).enabled


def test_matched_wallclock_and_interpolation():
    from accelerators.curriculum import V7Error, bpb_at_step, matched_wallclock
    ladder = (300, 600, 900)
    # per-segment seconds, the second segment disturbed by another process: the median ratio ignores it
    assert matched_wallclock(ladder, (3.0, 3.0, 3.0), (6.0, 30.0, 6.0)) == (2.0, 900.0, 450.0)
    assert matched_wallclock(ladder, (6.0, 6.0, 6.0), (3.0, 3.0, 3.0)) == (0.5, 450.0, 900.0)
    with pytest.raises(V7Error, match="positive"):
        matched_wallclock(ladder, (3.0, 3.0), (6.0, 6.0, 6.0))
    assert bpb_at_step(ladder, (3.0, 2.8, 2.7), 600) == 2.8
    mid = bpb_at_step(ladder, (3.0, 2.8, 2.7), 450)
    assert 2.8 < mid < 2.9          # linear in log(step): below the chord's 2.9
    with pytest.raises(V7Error, match="outside"):
        bpb_at_step(ladder, (3.0, 2.8, 2.7), 100)


def test_verdict_file_round_trip_and_missing_means_not_judged(tmp_path):
    from accelerators.curriculum import V7Error, load_v7_verdict, write_v7_verdict
    v = load_v7_verdict(PR, tmp_path / "none.json")
    assert not v.enabled and "not judged yet" in v.reason
    w = Verdict(False, 0.3, PR.alpha_per_arm, "no gain")
    write_v7_verdict(tmp_path / "v.json", w, study="s.json", study_sha256="0" * 64, prereg=PR)
    assert load_v7_verdict(PR, tmp_path / "v.json") == w
    (tmp_path / "bad.json").write_text('{"kind": "other"}')
    with pytest.raises(V7Error, match="bad.json"):
        load_v7_verdict(PR, tmp_path / "bad.json")


# ---------------------------------------------------------------- the race wiring
def test_cli_flag_parses_and_is_refused_in_a_replay():
    from experiments.race import main, parse_args, replay_flag_error
    assert parse_args([]).curriculum == "off"
    assert parse_args(["--curriculum", "on"]).curriculum == "on"
    args = parse_args(["--replay", "t.jsonl", "--curriculum", "on"])
    assert "--curriculum" in replay_flag_error(args) and "judged live" in replay_flag_error(args)
    assert main(["--replay", "t.jsonl", "--curriculum", "force"]) == 2


@pytest.mark.parametrize("mode", ["disabled", "enabled", "forced"])
def test_race_trains_with_the_curriculum_only_when_enabled_or_forced(tmp_path, mode):
    from accelerators.curriculum import CurriculumSampler
    from igla_jax.execution.presets import PRESETS
    from igla_jax.execution.race_runner import run_race
    from igla_jax.search.interfaces import RandomSampler
    from test_race_cli import FakeTrainer

    seen_tcs = []

    class Recording(FakeTrainer):
        def run_trial(self, mc, tc, **kw):
            seen_tcs.append(tc)
            return super().run_trial(mc, tc, **kw)

    v7 = Verdict(mode == "enabled", 0.001 if mode == "enabled" else 0.4, PR.alpha_per_arm, "synthetic")
    sampler = CurriculumSampler(RandomSampler(PRESETS["smoke"].space), v7, force=mode == "forced")
    o = run_race(seed=3, preset="smoke", out=tmp_path / "r", sampler=sampler, trainer=Recording())
    on = mode != "disabled"
    trained = [r for r in o.rows if r["status"] in ("trained", "confirmed")]
    assert trained and all(r["config"].get("curriculum", False) is on for r in trained)
    assert all((tc.curriculum is not None) is on for tc in seen_tcs) and seen_tcs
    assert all(config_from_dict(r["config"]).config_id == r["config_id"] for r in o.rows)
    recorded = dict(o.summary.verdicts)["curriculum"]
    assert recorded.enabled is on and ("FORCED" in recorded.reason) is (mode == "forced")
    ids = [t.config.config_id for t in o.state.trials]
    assert len(ids) == len(set(ids))
    assert len({dataclasses.replace(t.config, curriculum=False).config_id for t in o.state.trials}) == len(ids)


def test_quick_study_runs_resumes_and_is_not_judged(tmp_path, capsys):
    from experiments.studies.curriculum_study import main
    args = ["--quick", "--work", str(tmp_path / "w")]
    assert main(args) == 0
    first = json.loads((tmp_path / "w" / "study.json").read_text())
    assert main(args) == 0                                  # everything recorded: nothing retrained
    again = json.loads((tmp_path / "w" / "study.json").read_text())
    assert again["configs"] == first["configs"]
    out = capsys.readouterr().out
    assert out.count("compiling") == 2 and "BPB@wall-clock" in out
    v = json.loads((tmp_path / "w" / "v7_verdict.json").read_text())
    assert v["verdict"]["enabled"] is False and "not judged" in v["verdict"]["reason"]
    c = first["configs"][0]
    assert len(c["baseline"]["bpb_at_steps"]) == 2 and c["curriculum"]["candidate_tokens"] == 32 * 8 * 16
    assert c["curriculum"]["config_id"] != c["baseline"]["config_id"] == c["config_id"]
