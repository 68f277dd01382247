"""Compiling ahead (issue 23): the race's next configs, guessed on a copy of its state, compiled in one thread."""
from __future__ import annotations

import threading
import time

from igla_jax.execution.ahead import CompileAhead
from igla_jax.execution.presets import PRESETS
from igla_jax.execution.race_runner import run_replay
from igla_jax.execution.replay import load_table, table_space
from igla_jax.search.interfaces import RandomSampler
from igla_jax.search.lookahead import upcoming
from igla_jax.search.race import Race


def test_upcoming_names_the_configs_the_race_then_starts():
    """At every state of a 4-worker replay, the trials the next event starts are the ones `upcoming` named."""
    tab = load_table("assertions/curves_tenth.jsonl")
    sampler = RandomSampler(table_space(tab, strata=("uniform",), head_dim=PRESETS["tenth"].space.head_dim))
    states = []
    run_replay(seed=3, preset="tenth", table=tab, sampler=sampler, workers=4, report=False,
               progress=lambda s, ev: states.append(s))
    race = Race(states[0].config, sampler=sampler)
    checked = 0
    for a, b in zip(states, states[1:]):
        new = tuple(t.config for t in b.trials[len(a.trials):])
        if new:
            assert upcoming(race, a, len(new)) == new
            checked += 1
    assert checked >= 40   # the 81-trial cap, less the first four (started by Start) and the starts batched
    end = states[-1]
    assert upcoming(race, end, 3) == ()   # finished: nothing more starts


def test_compile_ahead_compiles_each_shape_once_newest_offer_first_and_survives_a_failure():
    order, gate = [], threading.Event()

    def warm(c):
        gate.wait(10)
        order.append(c)
        if c == "bad":
            raise ValueError("cannot lower")
        return 0.5

    ahead = CompileAhead(warm, key=lambda c: c.rstrip("'"), threads=1)
    ahead.offer(["a", "b"])
    time.sleep(0.2)                      # the thread took "a" and waits at the gate
    ahead.offer(["c", "b'", "bad"])      # "b'" has b's shape: not again
    gate.set()
    deadline = time.monotonic() + 10
    while len(order) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    ahead.close(timeout=5)
    assert order == ["a", "c", "bad", "b"]
    assert ahead.compiled == 3 and ahead.seconds == 1.5 and ahead.errors == ["ValueError: cannot lower"]
    assert not any(t.name == "igla-compile-ahead" and t.is_alive() for t in threading.enumerate())
