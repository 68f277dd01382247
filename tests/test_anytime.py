"""The anytime race (issue 21): sized by a budget, it keeps starting trials, reserves its champion's
confirmation, and ends with a confirmed champion at the highest rung it reached."""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest

from igla_jax.curves.table import ladder_for
from igla_jax.evidence.ledger import read_ledger
from igla_jax.evidence.ledger_row import CodeVersion
from igla_jax.evidence.prereg import load_prereg
from igla_jax.execution.presets import PRESETS
from igla_jax.execution.race_runner import run_race, run_replay
from igla_jax.execution.replay import synthetic_table
from igla_jax.search import anytime
from igla_jax.search.race import (Confirm, ConfirmDone, Finish, Race, RaceConfig, Reproduce, ReproduceDone, RungDone,
                                  Start, Train)
from tests.test_race_cli import Result   # the fake trainers' result type

PR = load_prereg()
V = CodeVersion("0" * 40, False)


# ---------------------------------------------------------------- a serial executor on a simulated clock
def cost_of(a) -> float:
    """Seconds an action takes here: 1 s of overhead (compile + evaluation) plus 0.1 s a step."""
    return 1.0 + 0.1 * (a.to_step - getattr(a, "from_step", 0))


def bpb_of(cfg, step: int) -> float:
    return 2.0 + (cfg.width / 100) + 3.0 / math.sqrt(step) + (int(cfg.config_id[:4], 16) % 97) * 1e-4


def drive_serial(race: Race):
    """Answers every compute action one at a time (the local executor), events stamped with the clock."""
    state, acts = race.step(race.init(), Start())
    todo, clock, fin = list(acts), 0.0, None
    while todo:
        a = todo.pop(0)
        if isinstance(a, Finish):
            fin = a
            break
        if not isinstance(a, (Train, Confirm, Reproduce)):
            continue
        clock += cost_of(a)
        b = bpb_of(a.config, a.to_step)
        if isinstance(a, Train):
            ev = RungDone(a.action_id, a.trial_id, a.rung, a.to_step, b, cost_of(a), "ok", (), clock)
        elif isinstance(a, Confirm):
            ev = ConfirmDone(a.action_id, a.seed, a.to_step, b, cost_of(a), "ok", b + 0.01, clock)
        else:
            ev = ReproduceDone(a.action_id, a.seed, a.to_step, b, cost_of(a), "ok", clock)
        state, new = race.step(state, ev)
        todo.extend(new)
    return state, fin, clock


def cfg(budget: float | None, max_trials: int | None = None, **kw) -> RaceConfig:
    return RaceConfig(rungs=(10, 30, 90), eta=3, seed=5, max_trials=max_trials, victory_seeds=(42, 43, 44),
                      reproduce_tol=1e-4, budget_s=budget, reserve_margin=PR.confirm_reserve_margin, **kw)


def test_reserve_estimate_reads_the_measured_costs():
    race = Race(cfg(100.0))
    state, acts = race.step(race.init(), Start())
    (a,) = [x for x in acts if isinstance(x, Train)]
    assert anytime.train_cost(state, None) is None and anytime.fits(state, None)  # nothing measured yet
    state, acts = race.step(state, RungDone(a.action_id, a.trial_id, 0, 10, 3.0, 2.0, "ok", (), 2.0))
    t = state.trial(a.trial_id)
    assert anytime.train_cost(state, None) == 2.0           # a new trial: the measured first-rung cost
    assert anytime.train_cost(state, t) == pytest.approx(4.0)  # no trial at rung 2 yet: own cost x 20/10 steps
    assert anytime.path_cost(t) == 2.0
    # 3 victory seeds + the reproduce run, each margin x the champion's path
    assert anytime.reserve_now(state) == pytest.approx(4 * PR.confirm_reserve_margin * 2.0)
    # once a trial has reached rung 2, a promotion is scaled by that trial's measured rung ratio
    fake = dataclasses.replace(t, trial_id="tX", results=t.results + (dataclasses.replace(t.results[0], rung=1,
                                                                                           step=30, cost_s=3.0),))
    s2 = dataclasses.replace(state, trials=state.trials + (fake,))
    assert anytime.train_cost(s2, t) == pytest.approx(2.0 * 3.0 / 2.0)
    assert anytime.top_rung(s2) == 1 and anytime.champion(s2).trial_id == "tX"
    assert anytime.reserve_now(s2) == pytest.approx(4 * PR.confirm_reserve_margin * 5.0)
    # the race started the next trial at once: it is in flight, estimated at the first-rung cost
    assert [x.trial_id for x in state.outstanding] == ["t0001"] and anytime.committed(state) == 2.0
    # the budget: elapsed 2 + in flight 2 + new trial 2 + reserve 10 must fit
    tight = dataclasses.replace(state, config=dataclasses.replace(state.config, budget_s=15.9))
    assert not anytime.fits(tight, None)
    assert anytime.fits(dataclasses.replace(tight, config=dataclasses.replace(tight.config, budget_s=16.0)), None)
    no_confirm = dataclasses.replace(state, config=dataclasses.replace(state.config, confirm=False, budget_s=2.5))
    assert anytime.reserve_now(no_confirm) == 0.0 and anytime.fits(no_confirm, None)


@pytest.mark.parametrize("budget", [5.0, 40.0, 150.0, 600.0])
def test_budget_race_ends_confirmed_within_its_budget(budget):
    state, fin, clock = drive_serial(Race(cfg(budget)))
    s = fin.summary
    assert state.phase == "finished" and s.champion is not None
    confirms = [r for r in s.seed_runs if r.kind == "confirm"]
    assert [r.seed for r in confirms] == [42, 43, 44] and all(r.test_bpb is not None for r in confirms)
    assert {r.step for r in s.seed_runs} == {s.champion_step}          # confirmation trains to the champion's step
    champ = state.trial(s.champion)
    assert s.champion_rung == anytime.top_rung(state) == len(champ.results) - 1
    assert s.champion_bpb == min(t.results[-1].bpb for t in state.trials if len(t.results) == len(champ.results))
    if budget >= 40:  # the first trial starts whatever the budget; past that the race keeps within it
        assert clock <= budget, (clock, budget)
    assert s.stopped_by == "budget" and s.elapsed_s == clock


def test_budget_race_uses_its_budget_and_starts_more_trials_than_the_cap():
    state, fin, clock = drive_serial(Race(cfg(2000.0)))
    capped, _, cap_clock = drive_serial(Race(cfg(None, max_trials=27)))
    assert fin.summary.counters.started > 27 and clock >= 0.8 * 2000.0, (fin.summary.counters.started, clock)
    assert fin.summary.champion_rung == 2 and clock <= 2000.0
    assert cap_clock < clock and capped.counters.started == 27


def test_sampler_exhaustion_ends_the_starting_phase_cleanly():
    from igla_jax.search.interfaces import RandomSampler
    from igla_jax.search.search_space import SearchSpace
    tiny = SearchSpace(width=(16,), depth=(2,), lr=(1e-3, 2e-3, 3e-3), beta1=(0.9,), ema_beta=(0.99,), warmup=(0.02,),
                       wd=(0.05,), dropout=(0.0,), head_dim=8)
    state, fin, _ = drive_serial(Race(cfg(10_000.0), sampler=RandomSampler(tiny)))
    assert fin.summary.counters.started == 9 and fin.summary.stopped_by == "complete"   # 3 configs x 3 families
    assert fin.summary.champion_rung == 2 and len(fin.summary.seed_runs) == 4


# ---------------------------------------------------------------- replay: the needle drawn after trial 81
def _needle_table(good_id: str | None):
    sp = PRESETS["quick"].space
    configs = [sp.config_at(f, i) for f in ("attn", "jepa", "hybrid") for i in range(0, 2187, 11)]
    rungs = (100, 300, 900)
    ladder = ladder_for(rungs)
    steps = {i: ladder[i] - (ladder[i - 1] if i else 0) for i in range(len(ladder))}
    return configs, synthetic_table(
        [(c, 11, "primary") for c in configs], ladder=ladder, rungs=rungs, primary_seed=11, preset="quick",
        bpb=lambda c, seed, step: bpb_of(c, step) - (1.0 if c.config_id == good_id else 0.0),
        segment_s=lambda c, seed, i: 0.01 * steps[i], eval_s=0.1,
        compile_s={k: 1.0 for k in {f"{c.family}/w{c.width}/d{c.depth}" for c in configs}})


def test_replay_finds_the_only_good_config_drawn_after_trial_81():
    _, flat = _needle_table(None)
    probe = run_replay(seed=3, preset="quick", table=flat, budget_s=600.0, version=V)
    order = [t.config.config_id for t in probe.state.trials]
    assert len(order) > 120
    good = order[100]            # trial t0100: the 101st config this race draws
    _, table = _needle_table(good)
    capped = run_replay(seed=3, preset="quick", table=table, max_trials=81, version=V)
    anytime_race = run_replay(seed=3, preset="quick", table=table, budget_s=600.0, version=V)
    assert good not in {t.config.config_id for t in capped.state.trials}
    assert anytime_race.summary.champion_config.config_id == good
    assert anytime_race.summary.champion_rung == 2 and anytime_race.state.config.max_trials is None
    # no confirmation in a replay, so no reserve: it ends at its first result past the budget
    assert anytime_race.summary.seed_runs == () and anytime_race.summary.stopped_by == "budget"
    times = [r["extra"]["elapsed_s"] for r in anytime_race.rows if "elapsed_s" in r["extra"]]
    assert sorted(times)[-2] < 600.0 <= max(times)


# ---------------------------------------------------------------- live: a fake trainer on a fake clock
class ClockTrainer:
    """run_trial contract with a simulated wall clock: each call advances `clock` by its cost (1 s + 0.01 s a step)."""

    def __init__(self, clock: list, crash_at: int | None = None):
        self.clock, self.crash_at, self.calls = clock, crash_at, 0

    def run_trial(self, mc, tc, *, to_step, from_checkpoint=None, save_checkpoint=None, progress=None,
                  eval_test=False):
        self.calls += 1
        if self.calls == self.crash_at:
            raise KeyboardInterrupt   # a Ctrl-C: nothing cleaned up
        start = json.loads(Path(from_checkpoint).read_text())["step"] if from_checkpoint else 0
        cost = 1.0 + 0.01 * (to_step - start)
        self.clock[0] += cost
        if save_checkpoint is not None:
            Path(save_checkpoint).parent.mkdir(parents=True, exist_ok=True)
            Path(save_checkpoint).write_text(json.dumps({"step": to_step}))
        bpb = 2.0 + mc.width / 100 + mc.depth / 10 + 3.0 / math.sqrt(to_step) + abs(math.log(tc.lr / 3e-3)) / 10
        bpb += 0.1 * to_step / tc.total_steps    # the lr schedule's horizon matters, as it does in training
        return Result(bpb, "ok", to_step, 1000, 1e4, cost, bpb + 0.01 if eval_test else None)


def _key(rows):
    return [(r.get("event_id"), r["status"], r["config_id"], r["seed"], r["step"], r["bpb"], r.get("test_bpb"),
             (r.get("extra") or {}).get("elapsed_s")) for r in rows]


def test_live_budget_too_short_for_the_top_rung_ends_with_three_confirmed_rows(tmp_path):
    clock = [0.0]
    budget = 60.0   # the quick preset's top rung (900 steps) is out of reach: ~11 s a from-scratch run here
    o = run_race(seed=42, preset="quick", out=tmp_path / "r", budget_s=budget, trainer=ClockTrainer(clock),
                 clock=lambda: clock[0])
    conf = [r for r in o.rows if r["status"] == "confirmed"]
    assert len(conf) == 3 and all(r["test_bpb"] is not None for r in conf)
    assert {r["step"] for r in conf} == {o.summary.champion_step} and o.summary.champion_step < 900
    # the champion is confirmed with the recipe it was selected with: the search horizon, stopped at its step
    assert all(r["extra"]["lr_horizon"] == 900 for r in conf) and o.summary.reproduced is True
    assert o.summary.stopped_by == "budget" and clock[0] <= budget * 1.05
    assert o.summary.counters.started > 3 and o.state.config.max_trials is None
    assert json.loads((tmp_path / "r" / "race.json").read_text())["spec"]["budget_s"] == budget
    assert all("elapsed_s" in r["extra"] for r in o.rows)


def test_live_budget_race_resumes_after_a_kill_with_what_is_left(tmp_path):
    ref_clock = [0.0]
    ref = run_race(seed=42, preset="quick", out=tmp_path / "ref", budget_s=60.0, trainer=ClockTrainer(ref_clock),
                   clock=lambda: ref_clock[0])
    clock = [0.0]
    out = tmp_path / "k"
    with pytest.raises(KeyboardInterrupt):
        run_race(seed=42, preset="quick", out=out, budget_s=60.0, trainer=ClockTrainer(clock, crash_at=9),
                 clock=lambda: clock[0])
    part = read_ledger(out / "ledger.jsonl").rows
    assert 0 < len(part) < len(ref.rows)
    clock2 = [1000.0]   # another session: its clock starts anywhere; race time continues from the ledger
    done = run_race(seed=42, preset="quick", out=out, resume=True, trainer=ClockTrainer(clock2),
                    clock=lambda: clock2[0])   # no --budget: the recorded one
    assert done.state.config.budget_s == 60.0
    assert _key(done.rows) == _key(ref.rows) and done.summary.elapsed_s == ref.summary.elapsed_s
