"""V4 study: the surrogate's held-out MAE against a power-law extrapolation, replays with V4 on, the verdict file.

1. The table's config ids are cut into K = round(1 / holdout_fraction) folds (seed --split-seed);
   fold 0 is the pre-registered held-out 20 %. The surrogate is fitted on the other folds; its
   held-out MAE of the top-rung BPB predicted from rung 1, 2 and 3 is reported beside the power law's.
2. `--repeats` races of the table's preset are replayed in memory (race seed = repeat, one worker,
   random sampler over the uniform stratum) twice: plain ASHA and ASHA + V4 (switched on here,
   since this is where it is judged). Every replayed prune is out of sample: V4 is cross-fitted,
   each config judged by the fold model that never saw it (the prunes of fold-0 configs, judged by
   the training-split model itself, are also counted apart).
3. Falsifiers (`accelerators.surrogate.surrogate_verdict`): MAE at rungs 2 and 3 (where it prunes)
   <= surrogate_mae_max, and the share of pruned configs (pooled over replays) whose true top-rung
   BPB (mean over the table's seeds, experiments.harness) is in the best cheap_promotion_top_fraction
   of the uniform stratum, the configs these races sample (prereg v5) <= surrogate_top_pruned_max.
   Reported, not judged: the same share against the whole table's top set; time to within
   harness_regret_tol of the table's best (harness metric and budget), ASHA vs ASHA + V4, paired; the
   same to the best uniform-stratum config (the only configs these races sample; the table's best may
   lie in the phi stratum, out of their reach) and the final incumbent's regret.

    python -m experiments.v4_study --table TABLE [--repeats 100] [--out assertions/v4_verdict.json]
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from accelerators.surrogate import (SurrogatePruner, crossfit_pruner, default_verdict_path, surrogate_verdict,
                                    write_v4_verdict)
from accelerators.surrogate_model import RungErrors, V4Error, holdout_errors, table_examples
from igla_jax.curves.table import CurveError
from igla_jax.evidence.ledger_row import CodeVersion
from igla_jax.evidence.prereg import Prereg, load_prereg
from igla_jax.evidence.verdict import Verdict
from igla_jax.execution.race_runner import run_replay
from igla_jax.execution.replay import ReplayTable, load_table

VERSION = CodeVersion("0" * 40, False)   # in-memory rows, thrown away: no git call per race
STUDY_VERDICT = Verdict(True, math.nan, math.nan, "V4 study: the surrogate replayed as such, to be judged")


@dataclasses.dataclass(frozen=True)
class Replays:
    """Paired replays (by repeat) of ASHA and ASHA + V4: prunes, time to tolerance, simulated and real seconds."""
    pruned: tuple[tuple[str, ...], ...]      # config ids V4 pruned, per repeat
    ttt_asha: tuple[float, ...]              # harness metric: to within tol of the table's best
    ttt_v4: tuple[float, ...]
    uttt_asha: tuple[float, ...]             # to within tol of the best uniform-stratum config (what the race samples)
    uttt_v4: tuple[float, ...]
    regret_asha: tuple[float, ...]           # the final incumbent's true BPB - the table's best
    regret_v4: tuple[float, ...]
    sim_asha: tuple[float, ...]
    sim_v4: tuple[float, ...]
    wall_v4_s: tuple[float, ...]


@dataclasses.dataclass(frozen=True)
class V4Study:
    errors: tuple[RungErrors, ...]
    replays: Replays
    pruned: int
    pruned_top: int
    pruned_holdout: int
    pruned_holdout_top: int
    pruned_top_table: int     # pruned configs in the best 10 % of the whole table, both strata (reported, not judged)
    holdout_configs: int
    fit_s: float              # printed, never written: the verdict file holds only what the data determine
    verdict: Verdict


def _trajectory(name: str, repeat: int, o: Any, table: ReplayTable) -> Any:
    from experiments.harness.replay_methods import _rows_trajectory
    promos = [r["extra"]["replayed"]["sim_time_s"] for r in o.rows if r["status"] == "promoted"]
    return _rows_trajectory(name, repeat, 1, o.rows, len(table.rungs) - 1, o.sim_s, min(promos, default=math.inf))


def run_replays(table: ReplayTable, pruner: SurrogatePruner, repeats: int, prereg: Prereg,
                on_repeat: Callable[[int], None] | None = None) -> Replays:
    """`repeats` paired replays (race seed = repeat) of plain ASHA and ASHA with `pruner`."""
    from experiments.harness.judge import budget_s, regret_curve, table_truth, time_to_tol
    truth = table_truth(table)
    budget = budget_s(table, truth)
    uni = np.array([s == "uniform" for s in truth.strata])
    utruth = dataclasses.replace(truth, true_bpb=np.where(uni, truth.true_bpb, math.inf))
    out: dict[str, list] = {k: [] for k in ("pruned", "sim_asha", "sim_v4", "wall_v4_s")
                            + tuple(f"{m}_{a}" for m in ("ttt", "uttt", "regret") for a in ("asha", "v4"))}
    for r in range(repeats):
        # anytime races sized by the harness budget (prereg v10)
        base = run_replay(seed=r, preset=table.preset, table=table, prereg=prereg, version=VERSION, budget_s=budget)
        t0 = time.monotonic()
        v4 = run_replay(seed=r, preset=table.preset, table=table, prereg=prereg, pruner=pruner, version=VERSION,
                        budget_s=budget)
        out["wall_v4_s"].append(time.monotonic() - t0)
        out["pruned"].append(tuple(x["config_id"] for x in v4.rows
                                   if x["status"] == "pruned" and x.get("decided_by") == pruner.name))
        for key, o in (("asha", base), ("v4", v4)):
            traj, tol = _trajectory(key, r, o, table), prereg.harness_regret_tol
            out[f"ttt_{key}"].append(time_to_tol(traj, truth, tol, budget))
            out[f"uttt_{key}"].append(time_to_tol(traj, utruth, tol, budget))
            out[f"regret_{key}"].append(float(regret_curve(traj, truth, np.array([budget]), budget)[0]))
            out[f"sim_{key}"].append(o.sim_s)
        if on_repeat is not None:
            on_repeat(r)
    return Replays(**{k: tuple(v) for k, v in out.items()})


def top_pruned(table: ReplayTable, pruned_ids: Sequence[str], prereg: Prereg, *, stratum: str | None = None) -> int:
    """How many of the pruned config ids (one per prune, pooled over replays) lie in the table's top set:
    the best cheap_promotion_top_fraction by true top-rung BPB (experiments.harness.table_truth, top_set);
    with `stratum`, the top set of that stratum's configs instead (reported, not judged)."""
    from experiments.harness.judge import table_truth, top_set
    truth = table_truth(table)
    keep = np.array([stratum is None or s == stratum for s in truth.strata])
    top = np.zeros(len(keep), bool)
    top[keep] = top_set(truth.true_bpb[keep], prereg.cheap_promotion_top_fraction)
    return sum(bool(top[truth.index[c]]) for c in pruned_ids)


def run_study(table: ReplayTable, repeats: int, prereg: Prereg | None = None, *, split_seed: int = 0,
              on_repeat: Callable[[int], None] | None = None, params: Mapping[str, Any] | None = None) -> V4Study:
    """Fits, measures, replays and judges V4 on `table` (module docstring)."""
    pr = prereg if prereg is not None else load_prereg()
    if repeats < 1:
        raise V4Error(f"--repeats {repeats}: need at least 1")
    if table.preset is None or len(table.rungs) < 3:
        raise V4Error(f"{table.name}: V4 needs a table of a preset with >= 3 rungs (it prunes from rung 2), "
                      f"got preset {table.preset!r} rungs {list(table.rungs)}")
    t0 = time.monotonic()
    pruner, m0, folds = crossfit_pruner(table, pr, STUDY_VERDICT, split_seed=split_seed, params=params)
    fit_s = time.monotonic() - t0
    errors = holdout_errors(m0, [e for e in table_examples(table) if folds[e.config.config_id] == 0])
    rep = run_replays(table, pruner, repeats, pr, on_repeat)
    ids = [c for per in rep.pruned for c in per]
    n_top = top_pruned(table, ids, pr, stratum="uniform")   # the top set of what the race samples (prereg v5)
    hold = [c for c in ids if folds[c] == 0]
    verdict = surrogate_verdict({e.rung: e.surrogate_mae for e in errors}, len(ids), n_top, pr)
    return V4Study(errors, rep, len(ids), n_top, len(hold), top_pruned(table, hold, pr, stratum="uniform"),
                   top_pruned(table, ids, pr), sum(f == 0 for f in folds.values()), fit_s, verdict)


def _num(x: float) -> float | str:
    return x if math.isfinite(x) else ("inf" if x > 0 else "-inf") if not math.isnan(x) else "nan"


def comparison(s: V4Study, prereg: Prereg) -> dict[str, Any]:
    """ASHA vs ASHA + V4 on the replays (reported, not a pass condition) and the baseline's standing."""
    from experiments.harness.judge import sign_test
    r = s.replays
    med = lambda x: float(np.median(x))  # noqa: E731
    at_prune = [e for e in s.errors if e.rung >= 1]
    return {
        "surrogate_beats_power_law": all(e.surrogate_mae < e.power_law_mae for e in at_prune),
        "asha_vs_v4": {
            "tolerance": prereg.harness_regret_tol,
            "median_time_to_tol_s": {"asha": _num(med(r.ttt_asha)), "asha+v4": _num(med(r.ttt_v4))},
            "reached_share": {"asha": float(np.mean(np.isfinite(r.ttt_asha))),
                              "asha+v4": float(np.mean(np.isfinite(r.ttt_v4)))},
            "uniform_best_median_time_to_tol_s": {"asha": _num(med(r.uttt_asha)), "asha+v4": _num(med(r.uttt_v4))},
            "uniform_best_reached_share": {"asha": float(np.mean(np.isfinite(r.uttt_asha))),
                                           "asha+v4": float(np.mean(np.isfinite(r.uttt_v4)))},
            "median_final_regret": {"asha": _num(med(r.regret_asha)), "asha+v4": _num(med(r.regret_v4))},
            "sign_test_v4_faster_to_uniform_best": sign_test(r.uttt_v4, r.uttt_asha),
            "median_race_sim_s": {"asha": med(r.sim_asha), "asha+v4": med(r.sim_v4)},
            "sign_test_v4_faster": sign_test(r.ttt_v4, r.ttt_asha),
            "mean_prunes_per_race": float(np.mean([len(p) for p in r.pruned])),
        },
        "pruned_holdout_fold": {"pruned": s.pruned_holdout, "pruned_top": s.pruned_holdout_top},
        "pruned_top_of_whole_table": s.pruned_top_table,
        "holdout_configs": s.holdout_configs,
    }


def _cell(x: Any) -> str:
    return f"{x:.4g}" if isinstance(x, float) else str(x)


def print_report(s: V4Study, cmp: dict[str, Any], table: ReplayTable, repeats: int, prereg: Prereg) -> None:
    from rich.console import Console
    from rich.table import Table
    con = Console(soft_wrap=True)
    t = Table(title=f"V4 held-out MAE of the top-rung BPB ({table.name}; held out: {s.holdout_configs} configs, "
                    f"{s.errors[0].n} runs)")
    for col in ("predicted from", "surrogate MAE", "power-law MAE", "80 % interval coverage"):
        t.add_column(col, justify="right")
    for e in s.errors:
        t.add_row(f"rung {e.rung + 1} ({table.rungs[e.rung]} steps)", f"{e.surrogate_mae:.4f}",
                  f"{e.power_law_mae:.4f}", f"{e.coverage:.2f}")
    con.print(t)
    a = cmp["asha_vs_v4"]
    share = s.pruned_top / s.pruned if s.pruned else 0.0
    hshare = s.pruned_holdout_top / s.pruned_holdout if s.pruned_holdout else 0.0
    r = Table(title=f"{repeats} paired replays (race seed = repeat, 1 worker)")
    for col in ("", "asha", "asha+v4"):
        r.add_column(col, justify="right")
    r.add_row(f"median time to within {a['tolerance']} of the best (sim s)", _cell(a["median_time_to_tol_s"]["asha"]),
              _cell(a["median_time_to_tol_s"]["asha+v4"]))
    r.add_row("share of replays that get there", f"{a['reached_share']['asha']:.2f}",
              f"{a['reached_share']['asha+v4']:.2f}")
    r.add_row("... of the best uniform config (sim s)", _cell(a["uniform_best_median_time_to_tol_s"]["asha"]),
              _cell(a["uniform_best_median_time_to_tol_s"]["asha+v4"]))
    r.add_row("share of replays that get there", f"{a['uniform_best_reached_share']['asha']:.2f}",
              f"{a['uniform_best_reached_share']['asha+v4']:.2f}")
    r.add_row("median final regret (BPB)", _cell(a["median_final_regret"]["asha"]),
              _cell(a["median_final_regret"]["asha+v4"]))
    r.add_row("median race length (sim s)", f"{a['median_race_sim_s']['asha']:.0f}",
              f"{a['median_race_sim_s']['asha+v4']:.0f}")
    con.print(r)
    st, su = a["sign_test_v4_faster"], a["sign_test_v4_faster_to_uniform_best"]
    con.print(f"V4 faster to the table's best in {st['wins']} replays, slower in {st['losses']}, tied {st['ties']} "
              f"(sign test p {st['p']:.3g}); to the uniform best: {su['wins']} / {su['losses']} / {su['ties']} "
              f"(p {su['p']:.3g}); "
              f"{a['mean_prunes_per_race']:.1f} V4 prunes per race; {s.pruned_top} of {s.pruned} pruned configs in the "
              f"best {prereg.cheap_promotion_top_fraction:.0%} of the uniform stratum the races sample (share {share:.3f}); "
              f"fold-0 configs only: {s.pruned_holdout_top} of {s.pruned_holdout} ({hshare:.3f}); in the whole table's "
              f"top set, both strata (reported, not judged): {s.pruned_top_table} of {s.pruned}")
    beat = "beats" if cmp["surrogate_beats_power_law"] else "does NOT beat"
    con.print(f"the surrogate {beat} the power-law baseline at every pruning rung; fit {s.fit_s:.1f} s (cross-fitted "
              f"models), {float(np.mean(s.replays.wall_v4_s)):.2f} s per V4 replay")
    con.print(f"V4 {s.verdict.line()}")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m experiments.v4_study", description=__doc__.splitlines()[0])
    ap.add_argument("--table", required=True, help="recorded curve table (its manifest beside it)")
    ap.add_argument("--repeats", type=int, default=100, help="paired replays (race seeds 0..n-1)")
    ap.add_argument("--split-seed", type=int, default=0, help="seed of the config folds (fold 0 is held out)")
    ap.add_argument("--out", default=str(default_verdict_path()), help="verdict file to write")
    a = ap.parse_args(argv)
    from rich.progress import Progress
    pr = load_prereg()
    try:
        table = load_table(a.table)
        with Progress(transient=True) as bar:
            task = bar.add_task(f"fitting, then {a.repeats} paired replays", total=a.repeats)
            s = run_study(table, a.repeats, pr, split_seed=a.split_seed, on_repeat=lambda r: bar.advance(task))
    except (CurveError, V4Error) as e:
        print(f"v4_study: {e}", file=sys.stderr)
        return 2
    cmp = comparison(s, pr)
    p = write_v4_verdict(a.out, s.verdict, table=table.name, table_sha256=table.sha256, preset=table.preset, prereg=pr,
                         split_seed=a.split_seed, errors=s.errors, pruned=s.pruned, pruned_top=s.pruned_top,
                         repeats=a.repeats, extra=cmp)
    print_report(s, cmp, table, a.repeats, pr)
    print(f"written {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
