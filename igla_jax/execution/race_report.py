"""What a race shows a person: live progress while it runs and the final summary (rich)."""
from __future__ import annotations

import math
import time
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from igla_jax.execution.race_runner import RaceOutcome, best_so_far, eta_s
from igla_jax.execution.run_report import time_line, time_split
from igla_jax.search.anytime import reserve_now
from igla_jax.search.race import ConfirmDone, ReproduceDone, RungDone, RaceState, Scored


def _fmt_s(s: float) -> str:
    if not math.isfinite(s):
        return "?"
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def trials_text(state: RaceState) -> str:
    c, n = state.config, state.counters
    cap = f"of at most {c.max_trials}" if c.max_trials is not None else "(no cap: the budget sizes the race)"
    return f"trials started {n.started} {cap}  pruned {n.pruned}  diverged {n.diverged}"


def budget_text(state: RaceState, session_s: float) -> str:
    """Race time spent and left of the budget (from the events), with the confirmation reserve; or the ETA."""
    c = state.config
    if c.budget_s is None:
        return f"elapsed {_fmt_s(session_s)}  ETA ~{_fmt_s(eta_s(state, session_s))}"
    spent = max(state.elapsed_s, 0.0)
    res = f"  (confirmation reserve {_fmt_s(reserve_now(state))})" if c.confirm else ""
    return (f"budget {_fmt_s(c.budget_s)}: spent {_fmt_s(spent)}, left {_fmt_s(max(0.0, c.budget_s - spent))}"
            f"{res}  session {_fmt_s(session_s)}")


def end_text(s: Any) -> str:
    """How a race ended, in words: finished (and why) or stopped."""
    champ = "champion confirmed" if s.seed_runs else ("champion chosen, not confirmed" if s.champion else "no champion")
    if s.stopped_by == "budget":
        return f"finished: budget spent, {champ}"
    if s.stopped_by == "complete":
        return f"finished: every trial it could start has raced, {champ}"
    if s.stopped_by == "deadline":
        return "stopped at the deadline (a pause: nothing confirmed); --resume continues"
    return f"ended ({s.stopped_by})"


class LiveProgress:
    """on_event callback: a live rich panel on a terminal, one plain line per event otherwise."""

    def __init__(self, console: Console, *, preset: str, budget_s: float | None = None):
        self.console, self.preset = console, preset   # budget_s: kept for callers; the race's config holds it
        self.t0 = time.monotonic()
        self.live: Live | None = None
        if console.is_terminal:
            self.live = Live(Text("starting the race (first compiles take a while on CPU)..."),
                             console=console, refresh_per_second=4, transient=False)
            self.live.start()

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()

    def panel(self, state: RaceState) -> Group:
        c, n = state.config, state.counters
        el = time.monotonic() - self.t0
        t = Table(title=f"race {self.preset} seed {c.seed}: rung occupancy", title_justify="left")
        for col in ("rung", "step", "reached", "running"):
            t.add_column(col, justify="right")
        occ = [sum(1 for tr in state.trials if len(tr.results) > k) for k in range(len(c.rungs))]
        run = [0] * len(c.rungs)
        for a in state.outstanding:
            if hasattr(a, "rung"):
                run[a.rung] += 1
        for k, r in enumerate(c.rungs):
            t.add_row(str(k + 1), str(r), str(occ[k]), str(run[k]))
        best = best_so_far(state)
        line = trials_text(state) + (f"  best BPB so far {best[1]:.4f} @ step {best[0]}" if best else "  best BPB -")
        tail = f"phase {state.phase}  " + budget_text(state, el)
        return Group(t, Text(line), Text(tail))

    def __call__(self, state: RaceState, ev: Any) -> None:
        if self.live is not None:
            self.live.update(self.panel(state))
            return
        el = time.monotonic() - self.t0
        if isinstance(ev, RungDone):
            what = f"{ev.trial_id} rung {ev.rung + 1} step {ev.step}"
        elif isinstance(ev, (ConfirmDone, ReproduceDone)):
            what = f"{'confirm' if isinstance(ev, ConfirmDone) else 'reproduce'} seed {ev.seed} step {ev.step}"
        elif isinstance(ev, Scored):
            what = f"filter scored {len(ev.scores)} candidates"
        else:
            what = type(ev).__name__
        bpb = getattr(ev, "bpb", None)
        val = f" bpb {bpb:.4f}" if isinstance(bpb, float) and math.isfinite(bpb) else (
            " DIVERGED" if getattr(ev, "status", "ok") != "ok" else "")
        best = best_so_far(state)
        top = f" | best {best[1]:.4f} @ {best[0]}" if best else ""
        self.console.print(f"[{_fmt_s(el)}] {what}{val} | {trials_text(state)}{top} | {budget_text(state, el)}",
                           highlight=False)


def print_summary(console: Console, o: RaceOutcome, final_verdicts: tuple = ()) -> None:
    """Leaderboard top 5, champion and its seed runs, each accelerator's verdict, the victory verdict.

    final_verdicts: (name, Verdict) pairs re-evaluated on the finished run (shown after the ones
    the race recorded while running).
    """
    s = o.summary
    c = o.state.config
    size = (f"budget {_fmt_s(c.budget_s)}, race time {_fmt_s(s.elapsed_s)}" if c.budget_s is not None
            else f"{c.max_trials} trials")
    console.print(f"\nrace {o.run_id} ({o.preset}, {size}) {end_text(s)}: {s.counters.started} trials started, "
                  f"{o.executed} actions executed, {o.replayed} replayed from the ledger, {o.wall_s:.1f} s; "
                  f"out {o.out}", highlight=False)
    if o.board_top:
        t = Table(title="leaderboard top 5 (v_igla_leaderboard: step >= min_victory_step; BPB = bits per byte)")
        for col in ("#", "config_id", "family", "seed", "step", "bpb"):
            t.add_column(col)
        for i, r in enumerate(o.board_top, 1):
            t.add_row(str(i), r.config_id, r.family, str(r.seed), str(r.step), f"{r.bpb:.4f}")
        console.print(t)
    else:
        console.print("leaderboard view: empty (no evaluation at step >= min_victory_step, the pre-registered "
                      "4000; smoke, quick and tenth races stop below it): see the race ranking")
    t = Table(title="race ranking top 5 (highest rung reached, then BPB there; not victory-eligible by itself)")
    for col in ("#", "trial", "config_id", "config", "step", "bpb"):
        t.add_column(col)
    for i, (tid, cfg, step, bpb) in enumerate(o.ranking[:5], 1):
        t.add_row(str(i), tid, cfg.config_id, cfg.short(), str(step), f"{bpb:.4f}")
    console.print(t)
    if s.champion_config is not None:
        def run_text(r) -> str:
            if r.bpb is None:
                return f"{r.kind} seed {r.seed}: diverged"
            test = f", test {r.test_bpb:.6f}" if r.test_bpb is not None else ""
            return f"{r.kind} seed {r.seed}: val {r.bpb:.6f}{test}"
        runs = "; ".join(run_text(r) for r in s.seed_runs)
        from igla_jax.evidence.prereg import load_prereg
        need = load_prereg().min_victory_step
        rung = f"rung {s.champion_rung + 1} of {len(c.rungs)}" if s.champion_rung is not None else "rung ?"
        console.print(f"champion {s.champion} {s.champion_config.config_id} ({s.champion_config.short()}): "
                      f"validation BPB {s.champion_bpb:.6f} at step {s.champion_step}, {rung}, the highest any "
                      f"trial reached (search seed {c.search_seed}; selected on validation, so biased low); its "
                      f"confirmation trains to step {s.champion_step}, and victory needs step >= {need} "
                      "(min_victory_step)", highlight=False)
        console.print(f"  from-scratch runs: {runs or 'none'}; reproduced: {s.reproduced} "
                      "(victory judges only the confirm runs' test BPB)", highlight=False)
    else:
        console.print("no champion: no trial finished a rung")
    if s.verdicts or final_verdicts:
        for name, v in s.verdicts:
            console.print(f"accelerator {name} (last recorded by the race): {v.line()}", highlight=False)
        for name, v in final_verdicts:
            console.print(f"accelerator {name} (final, on this run's ledger): {v.line()}", highlight=False)
    else:
        console.print("accelerators: none plugged in")
    if not getattr(o, "sim_s", None):   # a replay's rows carry no measured timings
        console.print(time_line(time_split(o.rows, s.elapsed_s, c.workers, getattr(o, "compiled_ahead", None))),
                      highlight=False)
    v = o.victory
    if v is None:
        why = "no champion" if s.champion_config is None else "no confirmation runs in this race (a replay)"
        console.print(f"victory: not evaluated ({why})")
    elif v.accepted:
        console.print(f"victory: ACCEPTED for config {v.config_id} (mean test BPB {v.mean:.4f}, p {v.p_value:.3g})")
    else:
        console.print(f"victory: rejected ({len(v.reasons)} reason(s))", highlight=False)
        for r in v.reasons:
            console.print(f"  - {r}", highlight=False)
