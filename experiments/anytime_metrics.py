"""The anytime metrics of the harness (prereg v8): anytime regret, times to 0.02/0.05/0.10, oracle multiples.

  python -m experiments.anytime_metrics --methods asha asha_capped synetune_asha [--peers] [--table-truth]

Per method and worker count: the normalised anytime regret (primary; the mean over the budget of
min(regret of the incumbent, harness_regret_cap), the cap before the first completion), the median
time to regret <= 0.02, 0.05 and 0.10 with the share that never gets there, each time also as a
multiple of the oracle time (the table's best config trained straight to the top rung), and a
paired one-sided sign test of the anytime regret against --reference at alpha / 7. True BPB (prereg
v8): configs the table's truth file (`igla_jax.curves.truth`) holds on both extra seeds take the mean of
those; the rest the table's mean over its seeds; the summary says how many configs each.
--table-truth uses the table alone (the truth before issue 21).

--fewer METHOD@W=N gives a slow method N repeats at W workers (0: not run there); the sign test pairs
repeats 0..n-1 that both methods ran. --jobs N replays in N processes (the same trajectories).
Progress goes to stderr, one line per finished (method, workers); every row carries its replay wall
seconds per repeat. The JSON records the sha256 of the verdict files the methods read.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from experiments import harness as H
from experiments.harness.judge import _fmt
from igla_jax.evidence.prereg import Prereg, load_prereg, repo_root
from igla_jax.execution.replay import ReplayTable

TOLS = (0.02, 0.05, 0.10)


def oracle_s(table: ReplayTable, truth: H.Truth) -> float:
    """The best config by true BPB trained straight to the top rung: its segments, one evaluation, one compile."""
    cid = truth.ids[int(np.argmin(truth.true_bpb))]
    return H.full_cost_s(table, cid) + table.compile_of(table.runs[(cid, table.primary_seed)].shape)


def regret_area(traj: H.Trajectory, truth: H.Truth, budget: float, cap: float) -> float:
    """(1 / budget) x integral over [0, budget] of min(regret, cap); the cap before the first completion."""
    a = H.arrays(traj, truth, budget)
    t_prev, cur, best_obs, area = 0.0, cap, math.inf, 0.0
    for t, c, o in zip(a.t, a.cidx, a.obs):
        area += cur * (min(t, budget) - t_prev)
        t_prev = min(t, budget)
        if o < best_obs:
            best_obs, cur = o, min(cap, float(truth.true_bpb[c] - truth.best))
    area += cur * (budget - t_prev)
    return area / budget


def summarise(trajs: Mapping[tuple[str, int], Sequence[H.Trajectory]], truth: H.Truth, budget: float,
              prereg: Prereg, oracle: float, reference: str | None,
              wall_s: Mapping[tuple[str, int], Sequence[float]] | None = None) -> list[dict[str, Any]]:
    """One row per (method, workers), with the sign test of its regret area against `reference` at the same workers
    (paired over the repeats both ran: 0..n-1)."""
    cap, alpha = prereg.harness_regret_cap, prereg.alpha_per_arm
    areas = {k: np.array([regret_area(t, truth, budget, cap) for t in v]) for k, v in trajs.items()}
    rows = []
    for (m, w), v in sorted(trajs.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        first = np.array([min(min(c[0] for c in t.completions), budget) if t.completions else budget for t in v])
        before = first / budget * cap          # the part of the area spent with no incumbent (at the cap)
        row: dict[str, Any] = {"method": m, "workers": w, "repeats": len(v),
                               "anytime_regret": {"median": float(np.median(areas[(m, w)])),
                                                  "mean": float(np.mean(areas[(m, w)])),
                                                  "mean_before_first_completion": float(np.mean(before))},
                               "first_completion_s": {"median": float(np.median(first))}}
        if wall_s is not None and wall_s.get((m, w)):
            row["replay_wall_s"] = {"mean": float(np.mean(wall_s[(m, w)])), "max": float(np.max(wall_s[(m, w)]))}
        for tol in TOLS:
            ts = np.array([H.time_to_tol(t, truth, tol, budget) for t in v])
            med = float(np.median(ts))
            row[f"tol_{tol:g}"] = {"median_s": _fmt(med), "never": float(np.mean(np.isinf(ts))),
                                   "oracle_multiple": _fmt(med / oracle)}
        ref = (reference, w)
        if reference is not None and ref in areas and m != reference:
            n = min(len(areas[(m, w)]), len(areas[ref]))
            st = H.sign_test(areas[(m, w)][:n], areas[ref][:n])   # a win: a lower regret area in the paired repeat
            row["vs_reference"] = {"reference": reference, "sign_test": st, "level": alpha,
                                   "lower_regret": bool(st["p"] < alpha)}
        rows.append(row)
    return rows


def parse_fewer(specs: Sequence[str], methods: Sequence[str], workers: Sequence[int]) -> dict[tuple[str, int], int]:
    """METHOD@W=N specs -> {(method, w): n}; each names a method and a worker count of this run."""
    out: dict[tuple[str, int], int] = {}
    for spec in specs:
        try:
            mw, n = spec.split("=")
            m, w = mw.rsplit("@", 1)
            key, val = (m, int(w)), int(n)
        except ValueError:
            raise ValueError(f"{spec!r} is not METHOD@W=N (e.g. dehb@16=5)") from None
        if m not in methods or key[1] not in workers or val < 0:
            raise ValueError(f"{spec!r}: {m!r} must be one of --methods, {key[1]} one of --workers, {val} >= 0")
        out[key] = val
    return out


def _cache_file(cache: Path, table: ReplayTable, budget: float, m: str, r: tuple[tuple[int, int], ...]) -> Path:
    key = f"{m}__" + "_".join(f"w{w}x{n}" for w, n in r) + f"__b{budget:.6g}"
    return cache / table.sha256[:16] / (key.replace("+", "-") + ".pkl")


def run_all(table: ReplayTable, methods: Sequence[str], reps: Mapping[int, int], fewer: Mapping[tuple[str, int], int],
            budget: float, *, jobs: int = 1, cache: Path | None = None) -> tuple[dict, dict]:
    """Every method's trajectories and replay wall seconds; methods with the same repeats run together.

    cache: a folder of each (method, repeats)'s trajectories per table and budget, written after its replays and
    read instead of replaying, so a long run can be split over processes and summarised at the end. It knows
    nothing of the code: clear it when the code changes."""
    import pickle
    trajs: dict = {}
    walls: dict = {}
    groups: dict[tuple[tuple[int, int], ...], list[str]] = {}
    for m in methods:
        r = tuple((w, fewer.get((m, w), n)) for w, n in reps.items() if fewer.get((m, w), n) > 0)
        f = _cache_file(cache, table, budget, m, r) if cache is not None else None
        if f is not None and f.exists():
            t, wl = pickle.loads(f.read_bytes())
            trajs.update(t)
            walls.update(wl)
            print(f"  {m}: {sum(len(v) for v in t.values())} trajectories from {f}", file=sys.stderr)
            continue
        groups.setdefault(r, []).append(m)

    def progress(m: str, w: int, wall: list[float]) -> None:
        print(f"  {m} @ {w} worker(s): {len(wall)} repeats, {sum(wall):.1f} s", file=sys.stderr, flush=True)

    for r, ms in groups.items():
        if not r:
            continue
        run = H.run_methods(table, ms, dict(r), budget, jobs=jobs, progress=progress)
        for m, why in run.skipped.items():
            print(f"warning: {m} skipped: {why}", file=sys.stderr)
        trajs.update(run.trajs)
        walls.update(run.wall_s)
        if cache is not None:
            for m in ms:
                if m in run.skipped:
                    continue
                f = _cache_file(cache, table, budget, m, r)
                f.parent.mkdir(parents=True, exist_ok=True)
                mine = {k: v for k, v in run.trajs.items() if k[0] == m}
                f.write_bytes(pickle.dumps((mine, {k: v for k, v in run.wall_s.items() if k[0] == m})))
    return trajs, walls


def verdict_hashes() -> dict[str, str | None]:
    """sha256 of each verdict file in assertions/ (None: missing): what race_default and the studies read."""
    from igla_jax.execution.run_dir import file_sha256
    names = ("assertions/v3_verdict.json", "assertions/v4_verdict.json", "assertions/v6_verdict.json",
             "assertions/v7_verdict.json", "assertions/zero_cost_study.csv", "assertions/mup_transfer.json",
             "coord_check/plots/coord_check_mup.json")
    return {n: (file_sha256(repo_root() / n) if (repo_root() / n).exists() else None) for n in names}


def markdown(docs: Sequence[Mapping[str, Any]], workers: Sequence[int] = (1, 4, 16)) -> str:
    """One markdown table of every method of the given result files (e.g. the development and the held-out
    table): per file and worker count the mean anytime regret, with the median time to regret <= 0.02 as a
    multiple of the oracle time (and the share of repeats that never get there); `*` marks a regret
    significantly lower than the reference's."""
    order = list(dict.fromkeys(r["method"] for d in docs for r in d["rows"]))   # each method once, first seen first
    cell: dict[tuple[int, str, int], Mapping[str, Any]] = {(i, r["method"], r["workers"]): r
                                                           for i, d in enumerate(docs) for r in d["rows"]}

    def c(i: int, m: str, w: int) -> str:
        r = cell.get((i, m, w))
        if r is None:
            return "-"
        star = "*" if r.get("vs_reference", {}).get("lower_regret") else ""
        txt = f"{r['anytime_regret']['mean']:.4f}{star}"
        om, never = r["tol_0.02"]["oracle_multiple"], r["tol_0.02"]["never"]
        txt += f" / {'never' if om == 'inf' else f'{om:.1f}x'}" + (f" ({never:.0%} never)" if never else "")
        return txt + (f" [{r['repeats']} reps]" if r["repeats"] < (100 if w == 1 else 20) else "")
    head = ["method"] + [f"{d['table'].removesuffix('.jsonl')} {w}w" for d in docs for w in workers]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in order:
        out.append("| " + " | ".join([m] + [c(i, m, w) for i in range(len(docs)) for w in workers]) + " |")
    return "\n".join(out)


def table_lines(rows: Sequence[Mapping[str, Any]], oracle: float) -> list[str]:
    def s(x: Any) -> str:
        return "never" if x == "inf" else f"{x:.0f}"
    head = (f"{'method':<20}{'w':>3}{'reps':>5}{'regret':>9}{'pre-1st':>9}{'1st s':>7}"
            + "".join(f"{'t<=' + format(t, 'g'):>10}{'never':>7}" for t in TOLS) + f"{'x oracle':>10}{'p vs ref':>10}")
    out = [f"oracle time {oracle:.1f} simulated s (regret: mean anytime regret; pre-1st: its part before the first "
           "top-rung completion; 1st s, t<=: median simulated s; x oracle at tolerance 0.02)", head, "-" * len(head)]
    for r in rows:
        ar = r["anytime_regret"]
        line = (f"{r['method']:<20}{r['workers']:>3}{r['repeats']:>5}{ar['mean']:>9.4f}"
                f"{ar['mean_before_first_completion']:>9.4f}{r['first_completion_s']['median']:>7.0f}")
        for t in TOLS:
            x = r[f"tol_{t:g}"]
            line += f"{s(x['median_s']):>10}{x['never']:>7.0%}"
        om = r["tol_0.02"]["oracle_multiple"]
        line += f"{('never' if om == 'inf' else f'{om:.1f}x'):>10}"
        vs = r.get("vs_reference")
        line += f"{vs['sign_test']['p']:>10.2g}" if vs else f"{'-':>10}"
        out.append(line)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m experiments.anytime_metrics", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--table", type=Path, default=repo_root() / "assertions" / "curves_tenth.jsonl")
    ap.add_argument("--methods", nargs="+", default=["asha", "asha_capped"])
    ap.add_argument("--reference", default="asha", help="the method every other is sign-tested against (default asha)")
    ap.add_argument("--peers", action="store_true", help="load the peer adapters (pip install -e '.[compare]')")
    ap.add_argument("--table-truth", action="store_true",
                    help="true BPB from the table alone (its mean over the seeds it holds, the primary seed included); "
                         "default (prereg v8): from the table's truth file where it holds both extra seeds")
    ap.add_argument("--repeats", type=int, default=100)
    ap.add_argument("--repeats-multi", type=int, default=20)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--fewer", nargs="+", default=[], metavar="METHOD@W=N",
                    help="a slow method's repeats at W workers (N = 0: not run at W), e.g. synetune_asha_cqr@16=0")
    ap.add_argument("--jobs", type=int, default=1, help="processes replaying in parallel (the same results)")
    ap.add_argument("--out", type=Path, default=None, help="write the rows as JSON here")
    ap.add_argument("--cache", type=Path, default=None, metavar="DIR",
                    help="keep each method's trajectories here and reuse them (split a long run over processes, then "
                         "run the whole command once more to summarise); clear it when the code changes")
    ap.add_argument("--markdown", type=Path, nargs="+", default=None, metavar="JSON",
                    help="print the markdown table of these result files (no replay) and exit")
    a = ap.parse_args(argv)
    if a.markdown:
        print(markdown([json.loads(p.read_text()) for p in a.markdown]))
        return 0
    try:
        fewer = parse_fewer(a.fewer, a.methods, a.workers)
    except ValueError as e:
        print(f"error: --fewer: {e}", file=sys.stderr)
        return 2
    from igla_jax.execution.replay import load_table
    import experiments.harness.replay_methods  # noqa: F401  (registers ours and the baselines)
    import experiments.harness.replay_methods_v4  # noqa: F401
    import experiments.harness.replay_default  # noqa: F401  (race_default)
    if a.peers:
        note = H.load_peers()
        if note:
            print(f"warning: {note}", file=sys.stderr)
    unknown = [m for m in a.methods if m not in H.METHODS]
    if unknown:
        print(f"error: unknown method(s) {unknown}; registered: {sorted(H.METHODS)}", file=sys.stderr)
        return 2
    pr = load_prereg()
    table = load_table(a.table)
    extra, note = None, "true BPB: the table's mean over the seeds it holds (primary seed included)"
    if not a.table_truth:
        from igla_jax import curves
        from igla_jax.curves import truth
        tp = truth.truth_path(a.table)
        seeds = curves.read_manifest(curves.manifest_path(a.table))["seeds"]["extra"]
        rows = list(curves.read_table(a.table).rows) + list(curves.read_table(tp, missing_ok=True).rows)
        extra = truth.true_bpb(rows, extra_seeds=seeds)
        note = f"true BPB: mean over the two extra seeds for {len(extra)} configs ({tp.name}), else the table's mean"
    tr = H.table_truth(table, extra)
    budget = H.budget_s(table, tr)
    reps = {w: a.repeats if w == 1 else a.repeats_multi for w in a.workers}
    trajs, walls = run_all(table, a.methods, reps, fewer, budget, jobs=a.jobs, cache=a.cache)
    oracle = oracle_s(table, tr)
    rows = summarise(trajs, tr, budget, pr, oracle, a.reference if a.reference in a.methods else None, walls)
    print(f"{table.name}: budget {budget:.1f} simulated s; {note}; best true BPB {tr.best:.4f}")
    for line in table_lines(rows, oracle):
        print(line)
    if a.out is not None:
        a.out.write_text(json.dumps({"command": "python -m experiments.anytime_metrics " + " ".join(argv or sys.argv[1:]),
                                     "table": table.name, "table_sha256": table.sha256, "budget_s": budget,
                                     "oracle_s": oracle, "truth": note, "prereg_version": pr.version,
                                     "verdict_files": verdict_hashes(), "rows": rows},
                                    indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
