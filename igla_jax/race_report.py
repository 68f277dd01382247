"""What a race shows a person: live progress while it runs and the final summary (rich)."""
from __future__ import annotations

import math
import time
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from igla_jax.race import ConfirmDone, ReproduceDone, RungDone, RaceState, Scored
from igla_jax.race_runner import RaceOutcome, best_so_far, eta_s


def _fmt_s(s: float) -> str:
    if not math.isfinite(s):
        return "?"
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class LiveProgress:
    """on_event callback: a live rich panel on a terminal, one plain line per event otherwise."""

    def __init__(self, console: Console, *, preset: str, budget_s: float | None):
        self.console, self.preset, self.budget_s = console, preset, budget_s
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
        line = (f"trials {n.started}/{c.max_trials}  pruned {n.pruned}  diverged {n.diverged}  "
                f"best BPB {best[1]:.4f} @ step {best[0]}" if best else
                f"trials {n.started}/{c.max_trials}  pruned {n.pruned}  diverged {n.diverged}  best BPB -")
        tail = f"phase {state.phase}  elapsed {_fmt_s(el)}  ETA ~{_fmt_s(eta_s(state, el))}"
        if self.budget_s is not None:
            tail += f"  budget {_fmt_s(self.budget_s)}"
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
        n = state.counters
        self.console.print(f"[{_fmt_s(el)}] {what}{val} | trials {n.started}/{state.config.max_trials} "
                           f"pruned {n.pruned} diverged {n.diverged} | ETA ~{_fmt_s(eta_s(state, el))}",
                           highlight=False)


def print_summary(console: Console, o: RaceOutcome, final_verdicts: tuple = ()) -> None:
    """Leaderboard top 5, champion and its seed runs, each accelerator's verdict, the victory verdict.

    final_verdicts: (name, Verdict) pairs re-evaluated on the finished run (shown after the ones
    the race recorded while running).
    """
    s = o.summary
    console.print(f"\nrace {o.run_id} ({o.preset}) {s.stopped_by}: {o.executed} actions executed, "
                  f"{o.replayed} replayed from the ledger, {o.wall_s:.1f} s; out {o.out}", highlight=False)
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
        console.print(f"champion {s.champion} {s.champion_config.config_id} ({s.champion_config.short()}): "
                      f"validation BPB {s.champion_bpb:.6f} at step {s.champion_step} (search seed "
                      f"{o.state.config.search_seed}; selected on validation, so biased low)", highlight=False)
        console.print(f"  from-scratch runs: {runs or 'none'}; reproduced: {s.reproduced} "
                      "(victory judges only the confirm runs' test BPB)", highlight=False)
    else:
        console.print("no champion: no trial finished the top rung")
    if s.verdicts or final_verdicts:
        for name, v in s.verdicts:
            console.print(f"accelerator {name} (last recorded by the race): {v.line()}", highlight=False)
        for name, v in final_verdicts:
            console.print(f"accelerator {name} (final, on this run's ledger): {v.line()}", highlight=False)
    else:
        console.print("accelerators: none plugged in")
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
