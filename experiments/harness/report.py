"""The hypothesis harness end to end: run every method, judge, plot (`plot_regret`); the JSON document, the printed
table, H's lines."""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from experiments.harness.judge import Truth, budget_s, evaluate, regret_curve, table_truth
from experiments.harness.methods import METHODS, Run, run_methods
from experiments.harness.trajectory import BASELINES, GRID
from igla_jax.evidence.prereg import Prereg
from igla_jax.execution.replay import ReplayTable

BUDGET_RULE = ("the uniform grid's simulated time to train every uniform-stratum config of the table to the top rung "
               "on 1 worker (recorded segments + one evaluation at the top rung + compile once per shape); the same "
               "budget for every method and worker count; completions after it are ignored")


def num(x: Any) -> float:
    """A JSON number back to float ("inf" -> inf, None -> nan)."""
    return math.nan if x is None else (math.inf if x == "inf" else float(x))


def fmt_s(x: Any) -> str:
    """Simulated seconds for people: 45 s, 12.3 min, 1.52 h; never for +inf; - for undefined."""
    v = num(x)
    if math.isnan(v):
        return "-"
    if math.isinf(v):
        return "never"
    return f"{v:.0f} s" if v < 120 else (f"{v / 60:.1f} min" if v < 7200 else f"{v / 3600:.2f} h")


def fmt_x(x: Any) -> str:
    v = num(x)
    return "-" if math.isnan(v) else ("inf" if math.isinf(v) else f"{v:.2f}")


def table_info(table: ReplayTable, truth: Truth, manifest: Mapping[str, Any] | None) -> dict[str, Any]:
    i = int(np.argmin(truth.true_bpb))
    info = {"name": table.name, "sha256": table.sha256, "preset": table.preset, "rungs": list(table.rungs),
            "runs": len(table.runs), "primary_configs": {s: truth.strata.count(s) for s in ("phi", "uniform")},
            "best_true_bpb": truth.best, "best_config_id": truth.ids[i], "best_stratum": truth.strata[i],
            "best_uniform_true_bpb": float(min([b for b, s in zip(truth.true_bpb, truth.strata) if s == "uniform"],
                                               default=math.inf))}
    if manifest is not None and "planned_runs" in manifest:
        info["planned_runs"] = int(manifest["planned_runs"])
        info["partial"] = len(table.runs) < info["planned_runs"]
    return info


def cost(run: Run, total_s: float, evaluate_s: float) -> dict[str, Any]:
    per = {f"{m}@w{w}": {"mean_ms": 1000 * float(np.mean(v)), "max_ms": 1000 * float(np.max(v)), "races": len(v)}
           for (m, w), v in run.wall_s.items()}
    allw = [x for v in run.wall_s.values() for x in v]
    return {"races": len(allw), "replay_wall_s": float(sum(allw)), "max_race_s": float(max(allw, default=0.0)),
            "evaluate_and_plots_s": evaluate_s, "total_wall_s": total_s, "per_method": per}


def verdicts(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """H(1) and H(2) per method of ours and worker count, one line each (every method's are in the JSON)."""
    out = []
    for r in rows:
        if r["kind"] != "ours":
            continue
        h1, h2, w = r["h1"], r["h2"], r["workers"]
        tag = f"{r['method']} @ {w} worker(s)"
        if h1["holds"] is None:
            out.append(f"H(1) {tag}: not judged (no uniform-grid run at these workers, or neither promoted)")
        else:
            out.append(f"H(1) {tag}: first promotion past rung 1 at {fmt_s(h1['median_s'])} (median) = "
                       f"{fmt_x(h1['ratio_to_grid'])} x the uniform grid's [{fmt_x(h1['interval'][0])}, "
                       f"{fmt_x(h1['interval'][1])}] (holds iff <= {h1['max']}): "
                       f"{'holds' if h1['holds'] else 'FALSIFIED'}")
        if h2["promoted"] == 0:
            out.append(f"H(2) {tag}: no cheap signal (proxy, surrogate) promoted any config: not applicable")
        else:
            out.append(f"H(2) {tag}: {h2['outside_top']} of {h2['promoted']} cheap promotions "
                       f"({h2['fail_fraction']:.1%}) outside the table's top {h2['top_fraction']:.0%} (falsified above "
                       f"{h2['max']:.0%}): {'FALSIFIED' if h2['falsified'] else 'holds'}")
    return out


def lines(doc: Mapping[str, Any]) -> list[str]:
    """The printed table: one row per method and worker count, then H(1)/H(2) and the cost."""
    tol = doc["prereg"]["harness_regret_tol"]
    lvl = doc["bootstrap"]["level"]
    mw = max([14] + [len(r["method"]) for r in doc["results"]])
    head = (f"{'method':<{mw}} {'w':>3} {'median time to regret <= ' + str(tol) + f' [{lvl:.0%} interval]':<44} "
            f"{'never':>6}  {'speed-up vs grid [interval]':<28} {'p':>8}  {'speed-up vs ASHA [interval]':<28} {'p':>8}")
    tb = doc["table"]
    runs = f"{tb['runs']} of {tb['planned_runs']} planned runs" if "planned_runs" in tb else f"{tb['runs']} runs"
    out = [f"{tb['name']}: {tb['primary_configs']} primary configs ({runs}); best true top-rung BPB "
           f"{tb['best_true_bpb']:.4f} ({tb['best_stratum']} stratum), best uniform {tb['best_uniform_true_bpb']:.4f}; "
           f"common budget {fmt_s(doc['budget_s'])} simulated (the uniform grid on 1 worker)", head, "-" * len(head)]
    for r in doc["results"]:
        t = r["time_to_tol_s"]
        cell = f"{fmt_s(t['median'])} [{fmt_s(t['interval'][0])}, {fmt_s(t['interval'][1])}]"
        sp = []
        for b in (GRID, "asha"):
            s = r["speedup"].get(b)
            if s is None:
                sp.append(f"{'-':<28} {'-':>8}")
                continue
            mark = "*" if s["faster"] else " "
            txt = f"{fmt_x(s['value'])}{mark} [{fmt_x(s['interval'][0])}, {fmt_x(s['interval'][1])}]"
            sp.append(f"{txt:<28} {s['sign_test']['p']:>8.2g}")
        out.append(f"{r['method']:<{mw}} {r['workers']:>3} {cell:<44} {r['never_fraction']['value']:>6.0%}  "
                   f"{sp[0]}  {sp[1]}")
    out.append(f"* faster: one-sided sign test over paired repeats p < alpha / 7 = "
               f"{doc['prereg']['alpha_per_arm']:.3g}, "
               f"the speed-up above 1 and its interval above 1 (intervals resample repeats and the table's configs; "
               f"- = both never)")
    out.extend(doc["notes"])
    out.extend(verdicts(doc["results"]))
    c = doc["cost"]
    out.append(f"cost: {c['races']} replayed races in {c['replay_wall_s']:.1f} s "
               f"(slowest race {c['max_race_s']:.3f} s); "
               f"statistics and plots {c['evaluate_and_plots_s']:.1f} s; total {c['total_wall_s']:.1f} s wall")
    return out


def document(*, command: str, table: Mapping[str, Any], budget: float, prereg: Prereg, repeats: Mapping[int, int],
             draws: int, seed: int, rows: list, notes: list[str], accelerators: Mapping[str, str],
             cost_doc: Mapping[str, Any], plots: list[str], commit: Any) -> dict[str, Any]:
    """The result JSON (commit: a ledger.CodeVersion)."""
    return {
        "command": command, "commit": commit.sha, "dirty": commit.dirty, "table": dict(table), "budget_s": budget,
        "budget_rule": BUDGET_RULE,
        "prereg": {"version": prereg.version, "harness_regret_tol": prereg.harness_regret_tol,
                   "alpha_per_arm": prereg.alpha_per_arm, "bootstrap_level": prereg.bootstrap_level,
                   "harness_first_promotion_ratio_max": prereg.harness_first_promotion_ratio_max,
                   "cheap_promotion_fail_max": prereg.cheap_promotion_fail_max,
                   "cheap_promotion_top_fraction": prereg.cheap_promotion_top_fraction},
        "methods": {m: {"kind": METHODS[m].kind, "note": METHODS[m].note}
                    for m in dict.fromkeys(r["method"] for r in rows)},
        "baselines": list(BASELINES), "accelerators": dict(accelerators),
        "repeats": {str(w): n for w, n in repeats.items()},
        "bootstrap": {"draws": draws, "seed": seed, "level": prereg.bootstrap_level,
                      "resamples": "repeats (paired across methods) and the table's configs, with replacement"},
        "json_numbers": "\"inf\" = never / infinite; null = undefined (both never)",
        "results": rows, "notes": notes, "cost": dict(cost_doc), "plots": plots,
    }


def run_hypothesis(table: ReplayTable, prereg: Prereg, *, manifest: Mapping[str, Any] | None, methods: Sequence[str],
                   repeats: Mapping[int, int], draws: int, seed: int, plot_dir: Path, notes: list[str], command: str,
                   progress: Callable[[str, int, list[float]], None] | None = None, jobs: int = 1) -> dict[str, Any]:
    """Replays every method (in `jobs` processes), judges them, draws one regret plot per worker count; returns the
    JSON document."""
    from experiments.harness import replay_methods
    from igla_jax.evidence.ledger_row import code_version
    t0 = time.perf_counter()
    truth = table_truth(table)
    budget = budget_s(table, truth)
    info = table_info(table, truth, manifest)
    notes = list(notes)
    if info.get("partial"):
        notes.append(f"PARTIAL table: {info['runs']} of {info['planned_runs']} planned runs recorded; no conclusion")
    notes.append("asha+v3+v4+v6 = every accelerator a replay can run together (V3 BOHB, V4 surrogate, V6 UCB1); V5 "
                 "is replayed alone and with V6 (V3 and V5 are both samplers: BOHB's chosen configs would bias V5's "
                 "randomised arm comparison); V1 and V2 have no replay adapter and are off by their verdicts")
    run = run_methods(table, methods, repeats, budget, progress=progress, jobs=jobs)
    notes.extend(f"peer {m} skipped: {why}" for m, why in run.skipped.items())
    t1 = time.perf_counter()
    rows = evaluate(run.trajs, truth, budget, prereg, kinds={m: METHODS[m].kind for m in methods}, draws=draws,
                      seed=seed)
    plot_dir.mkdir(parents=True, exist_ok=True)
    plots = []
    for w in repeats:
        p = plot_dir / f"hypothesis_regret_w{w}.png"
        plot_regret(run, truth, budget, prereg, p, w, title=f"{table.name}: anytime regret, {w} worker(s), median "
                                                           f"over {repeats[w]} repeats, 25-75 % band")
        plots.append(str(p))
    t2 = time.perf_counter()
    accel = {"v5": "replayed (accelerators.phi_replay)", **replay_methods.other_accelerators(prereg)}
    return document(command=command, table=info, budget=budget, prereg=prereg, repeats=repeats, draws=draws,
                    seed=seed, rows=rows, notes=notes, accelerators=accel, cost_doc=cost(run, t2 - t0, t2 - t1),
                    plots=plots, commit=code_version())


def plot_regret(run: Run, truth: Truth, budget: float, prereg: Prereg, path: Any, workers: int, *,
                title: str = "") -> None:
    """Anytime regret of every method at `workers`: median over repeats and the 25-75 % band (log time)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    keys = [k for k in run.trajs if k[1] == workers]
    ends = [max([c[0] for t in run.trajs[k] for c in t.completions] + [t.sim_end_s for t in run.trajs[k]])
            for k in keys]
    hi = min(budget, max(ends + [1.0]))
    times = np.geomspace(max(hi * 1e-4, 1.0), hi, 400)
    floor = 1e-3
    fig, ax = plt.subplots(figsize=(8, 5))
    colors = plt.get_cmap("tab20").colors   # 20 distinct colours: a method never shares one
    for i, (m, _w) in enumerate(keys):
        curves = np.stack([regret_curve(t, truth, times, budget) for t in run.trajs[(m, workers)]])
        q = np.quantile(np.maximum(curves, floor), [0.25, 0.5, 0.75], axis=0, method="inverted_cdf")
        q = np.where(np.isinf(q), np.nan, q)
        kind = METHODS[m].kind if m in METHODS else "peer"
        line, = ax.plot(times / 3600, q[1], lw=2.2 if kind == "ours" else 1.4, color=colors[(2 * i) % 20 + (i // 10) % 2],
                        ls="-" if kind == "ours" else ("--" if kind == "baseline" else ":"), label=m)
        ax.fill_between(times / 3600, q[0], q[2], color=line.get_color(), alpha=0.15, lw=0)
    ax.axhline(prereg.harness_regret_tol, color="black", ls="--", lw=0.8, label=f"tolerance {prereg.harness_regret_tol}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("simulated time (hours)")
    ax.set_ylabel(f"regret (BPB; 0 drawn at {floor})")
    ax.set_title(title or f"anytime regret, {workers} worker(s): median over repeats, 25-75 % band", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
