"""Programs compiled ahead and timed (igla_jax.training.programs): the same bits as jit, compile counted once."""
from __future__ import annotations

import threading

import jax
import jax.numpy as jnp
import numpy as np

from igla_jax.training import programs
from igla_jax.training.data import splits
from igla_jax.training.models import ModelConfig
from igla_jax.training.step import TrainConfig, _eval_logits, init_state, train_chunk
from igla_jax.training.train import run_population, run_trial

MC = ModelConfig(family="attn", width=16, depth=1, context=16, head_dim=8, d_base=16)
TC = TrainConfig(lr=3e-3, total_steps=64, batch=4, seed=3)


def test_the_compiled_chunk_is_jits_program_bit_for_bit():
    train_N, end = jnp.asarray(splits()[0]), jnp.asarray(40, jnp.int32)
    a, _ = train_chunk(init_state(MC, TC), train_N, end, batch=TC.batch)
    prog, _ = programs.compiled("train_chunk", train_chunk, init_state(MC, TC), train_N, end, batch=TC.batch)
    b, _ = prog(init_state(MC, TC), train_N, end)
    for x, y in zip(jax.tree_util.tree_leaves(a.params), jax.tree_util.tree_leaves(b.params)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_a_trial_reports_compile_train_and_eval_seconds_and_compiles_a_shape_once():
    programs.clear()
    first = run_trial(MC, TC, to_step=32)
    again = run_trial(MC, TC, to_step=32)
    assert first.compile_s > 0 and first.train_s > 0 and first.eval_s > 0
    assert again.compile_s == 0.0 and again.val_bpb == first.val_bpb   # same program, same bits
    assert 0 < first.train_s <= first.wall_s and again.train_s == again.wall_s   # wall_s: training, its compile in
    pop = run_population(MC, [TC, TrainConfig(lr=1e-3, total_steps=64, batch=4, seed=4)], to_step=32)
    # a vmapped population is the same training to float rounding (its reductions are batched), not bit for bit
    assert abs(pop[0].val_bpb - first.val_bpb) < 1e-6 and pop[0].compile_s > 0
    assert pop[0].train_s == pop[1].train_s > 0


def test_a_program_warmed_in_a_thread_is_compiled_once():
    programs.clear()
    state = init_state(MC, TC)
    x = jax.ShapeDtypeStruct((7, MC.context), jnp.int32)
    before = programs.compile_seconds()
    th = programs.warm("eval_logits", _eval_logits, MC, state.params, x)
    prog, waited = programs.compiled("eval_logits", _eval_logits, MC, state.params, x)
    th.join()
    spent = programs.compile_seconds() - before
    assert spent > 0 and waited <= spent + 1.0
    assert programs.compiled("eval_logits", _eval_logits, MC, state.params, x) == (prog, 0.0)
    assert not any(t.name.startswith("igla-compile") and t.is_alive() for t in threading.enumerate())


def test_a_race_writes_the_same_ledger_with_and_without_ahead_of_time_programs(tmp_path):
    """Issue 23: the AOT programs change no decision and no bit; only the timings differ."""
    from igla_jax.execution.race_runner import run_race

    def ledger(out, on):
        programs.clear()
        programs.aot(on)
        try:
            o = run_race(seed=5, preset="smoke", out=out, report=False)
        finally:
            programs.aot(True)
        keep = ("config_id", "seed", "step", "bpb", "status", "test_bpb", "event_id", "decided_by")
        return [({k: r.get(k) for k in keep}, {k: v for k, v in r["extra"].items()
                                                if k in ("trial_id", "action", "rung", "train_curve", "from_step")})
                for r in o.rows], o.compiled_ahead
    # with: AOT programs, the next trials' compiled by the background thread (igla_jax.execution.ahead) while one
    # trains; without: plain jit, each program compiled inside its first call (the background thread can only
    # build the next shapes' fresh states, which caches their operations)
    (with_aot, ahead), (without, jit_ahead) = ledger(tmp_path / "aot", True), ledger(tmp_path / "jit", False)
    assert with_aot == without and len(with_aot) > 5
    assert ahead[1] >= 1 and jit_ahead[1] >= 1   # the thread ran in both: the ledgers agree all the same
