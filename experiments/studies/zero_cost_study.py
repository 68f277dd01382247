"""The V2 study: do zero-cost proxies predict rung-2 BPB?  python -m experiments.zero_cost_study --run | --analyze

--run draws configs from the race's `quick` preset search space (all three families, equal numbers,
sample seed --seed, never used for any tuning), trains each from scratch to the quick preset's
rung 2 (300 steps, lr-schedule horizon = its final rung 900; the pre-registered 3000-step rung 2
does not fit the 2-core CPU budget), records the validation BPB and the proxies at init, and writes
assertions/zero_cost_study.csv row by row (a rerun skips rows already there; --fresh starts over).
--analyze prints Spearman rho of synflow, grad_norm, ensemble and parameter count with BPB, with
percentile bootstrap intervals at the pre-registered bootstrap_level, per family and overall, and
V2's verdict, decided at alpha / bonferroni_n by a one-sided bootstrap lower bound. Sign
convention: the printed rho is -Spearman(score, BPB), positive when a higher score goes with a
lower (better) BPB.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import sys
import time
from pathlib import Path

DEFAULT_CSV = Path(__file__).resolve().parents[2] / "assertions" / "zero_cost_study.csv"  # experiments/studies/
COLUMNS = ("config_id", "family", "config", "synflow", "grad_norm", "ensemble", "params", "bpb", "status",
           "steps", "horizon", "seed", "train_wall_s", "commit")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m experiments.zero_cost_study", description=__doc__.split("\n\n")[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--run", action="store_true", help="train the study configs and write the table")
    mode.add_argument("--analyze", action="store_true", help="print the correlations and the verdict")
    mode.add_argument("--rescore", action="store_true", help="recompute the proxy columns of the table (no training)")
    mode.add_argument("--table", type=Path, default=None,
                      help="score every primary-seed config of a recorded curve table (experiments.record_curves) "
                           "and report rho with BPB at each rung; writes --table-out")
    ap.add_argument("--table-out", type=Path, default=DEFAULT_CSV.with_name("zero_cost_table_study.json"),
                    help="with --table: the JSON result (default assertions/zero_cost_table_study.json)")
    ap.add_argument("--csv", type=Path, default=DEFAULT_CSV, help=f"study table (default {DEFAULT_CSV})")
    ap.add_argument("--per-family", type=int, default=17, help="configs per family (default 17: 51 in all)")
    ap.add_argument("--seed", type=int, default=5, help="sample seed and every trial's training seed (default 5)")
    ap.add_argument("--fresh", action="store_true", help="with --run: discard an existing table first")
    ap.add_argument("--json", action="store_true", help="with --analyze: print the table as JSON")
    args = ap.parse_args(argv)
    if args.per_family < 1:
        ap.error(f"--per-family {args.per_family}: must be >= 1")
    return args


def _fmt(x: float) -> str:
    return "nan" if not math.isfinite(x) else repr(float(x))


def _preamble(preset, seed: int, per_family: int, commit: str) -> str:
    return (f"# V2 zero-cost study (experiments/zero_cost_study.py --run --seed {seed} --per-family {per_family}); "
            f"commit {commit}\n"
            f"# protocol: quick preset rung 2 = {preset.rungs[1]} steps (NOT the pre-registered 3000), lr horizon "
            f"{preset.rungs[-1]} (quick final rung), context {preset.context}, batch {preset.batch}, quick widths "
            f"{preset.space.width} depths {preset.space.depth}; configs from search_space.sample(seed, family, n, "
            "quick space); held out from any tuning\n"
            "# scores at init (accelerators/zero_cost.py): synflow and grad_norm higher = better; ensemble = mean "
            "rank of the two over this whole table; params = non-embedding count; bpb = validation bits/byte at "
            "`steps` (nan = diverged); the proxy columns are filled after all training (--rescore recomputes them)\n")


def run(args: argparse.Namespace) -> int:
    from accelerators import zero_cost as zc
    from igla_jax.evidence.ledger_row import code_version
    from igla_jax.execution.presets import PRESETS
    from igla_jax.execution.runner import enable_compile_cache
    from igla_jax.search.search_space import sample
    from igla_jax.training.models.config import FAMILIES
    from igla_jax.training.train import run_trial

    enable_compile_cache(os.environ.get("IGLA_JAX_CACHE", str(Path.home() / ".cache" / "igla_jax" / "xla")))
    preset = PRESETS["quick"]
    steps, horizon = preset.rungs[1], preset.rungs[-1]
    v = code_version()
    commit = v.sha + ("+dirty" if v.dirty else "")
    drawn = {f: sample(args.seed, f, args.per_family, preset.space) for f in FAMILIES}
    order = [drawn[f][i] for i in range(args.per_family) for f in FAMILIES]  # families interleaved
    if args.fresh and args.csv.exists():
        args.csv.unlink()
    lines = [ln for ln in args.csv.read_text().splitlines() if ln and not ln.startswith("#")] if args.csv.exists() else []
    done = {r["config_id"]: r for r in csv.DictReader(lines)}
    body = "\n".join(lines[1:]) + "\n" if len(lines) > 1 else ""  # a resumed run keeps its rows
    args.csv.write_text(_preamble(preset, args.seed, args.per_family, commit) + ",".join(COLUMNS) + "\n" + body)
    t_start = time.perf_counter()
    for k, cfg in enumerate(order):
        if cfg.config_id in done:
            continue
        mc = cfg.to_model_config(context=preset.context, head_dim=preset.space.head_dim)
        tc = cfg.to_train_config(seed=args.seed, total_steps=horizon, batch=preset.batch)
        t0 = time.perf_counter()
        res = run_trial(mc, tc, to_step=steps)
        t_train = time.perf_counter() - t0
        bpb = res.val_bpb if res.status == "ok" else float("nan")
        row = [cfg.config_id, cfg.family, cfg.canonical_json(), "", "", "", str(zc.non_embedding_params(mc)),
               _fmt(bpb), res.status, str(res.step), str(horizon), str(args.seed), f"{t_train:.2f}", commit]
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(row)
        with args.csv.open("a") as f:
            f.write(buf.getvalue())
            f.flush()
            os.fsync(f.fileno())
        print(f"[{k + 1}/{len(order)}] {cfg.short()} bpb {bpb:.4f} train {t_train:.1f}s "
              f"total {time.perf_counter() - t_start:.0f}s", flush=True)
    rescore(args.csv)
    print(f"scored; study done in {time.perf_counter() - t_start:.0f}s", flush=True)
    return 0


def rescore(path: Path) -> None:
    """(Re)computes synflow, grad_norm, ensemble (mean rank over the whole table) with the current code."""
    from accelerators.zero_cost_proxies import score_models
    from igla_jax.execution.presets import PRESETS
    from igla_jax.search.search_space import config_from_dict
    preset = PRESETS["quick"]
    text = path.read_text().splitlines()
    notes = [ln for ln in text if ln.startswith("#")]
    rows = list(csv.DictReader([ln for ln in text if ln and not ln.startswith("#")]))
    mcs = [config_from_dict(json.loads(r["config"]), source=f"{path} row {r['config_id']}")
           .to_model_config(context=preset.context, head_dim=preset.space.head_dim) for r in rows]
    sc = score_models(mcs, [int(r["seed"]) for r in rows], batch=preset.batch)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    for i, r in enumerate(rows):
        w.writerow({**r, **{k: _fmt(sc[k][i]) for k in ("synflow", "grad_norm", "ensemble")},
                    "params": str(int(sc["params"][i]))})
    path.write_text("\n".join(notes) + "\n" + buf.getvalue())


def analyze(args: argparse.Namespace) -> int:
    from accelerators.zero_cost import choose_proxy, proxy_table, rows_from_csv
    from accelerators.zero_cost_proxies import PROXIES
    from igla_jax.evidence.prereg import load_prereg
    rows = rows_from_csv(args.csv)
    prereg = load_prereg()
    table = proxy_table(rows, prereg, seed=args.seed)
    proxy, verdict = choose_proxy(rows, prereg)
    if args.json:
        print(json.dumps({"table": table, "filter_proxy": proxy, "verdict": verdict.__dict__,
                          "sign": "rho = -Spearman(score, BPB): positive = higher score, lower BPB"}, indent=1))
        return 0
    print(f"{args.csv}: {len(rows)} configs. rho = -Spearman(score, BPB) (positive = the proxy ranks better "
          f"configs higher); [{prereg.bootstrap_level:g} percentile bootstrap (pre-registered bootstrap_level), "
          "2000 resamples]")
    print(f"{'subset':9} {'n':>3} {'div':>3}  " + "  ".join(f"{p:>24}" for p in PROXIES))
    for name, e in table.items():
        cells = [f"{e[p]['rho']:+.3f} [{e[p]['ci'][0]:+.2f},{e[p]['ci'][1]:+.2f}]" for p in PROXIES]
        print(f"{name:9} {e['n']:>3} {e['diverged']:>3}  " + "  ".join(f"{c:>24}" for c in cells))
    print(f"V2 verdict: {verdict.line()}")
    print(f"filter proxy: {proxy or 'none (V2 off)'}")
    return 0


def table(args: argparse.Namespace) -> int:
    """The V2 study on every config of a recorded curve table (no training: the table has the BPBs)."""
    from accelerators.zero_cost import table_study
    from igla_jax.curves.table import CurveError, read_table
    from igla_jax.evidence.prereg import load_prereg
    manifest = args.table.with_name(args.table.name.replace(".jsonl", "") + ".manifest.json")
    try:
        t = read_table(args.table)
        m = json.loads(manifest.read_text())
    except (CurveError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    pr = load_prereg()
    t0 = time.perf_counter()
    res = table_study(t.rows, rungs=m["rungs"], context=m["context"], batch=m["batch"],
                      head_dim=m["space"]["head_dim"], prereg=pr, seed=args.seed)
    res.update(table=str(args.table), table_sha256=m.get("table_sha256"), seconds=round(time.perf_counter() - t0, 1),
               command=f"python -m experiments.zero_cost_study --table {args.table}")
    args.table_out.write_text(json.dumps(res, indent=1) + "\n")
    print(f"{args.table}: {res['n']} primary-seed configs scored in {res['seconds']} s; rho = -Spearman(score, BPB), "
          f"{pr.bootstrap_level:.0%} bootstrap interval")
    for k, per in res["rungs"].items():
        for name, e in per.items():
            cells = "  ".join(f"{p} {e[p]['rho']:+.2f} [{e[p]['ci'][0]:+.2f}, {e[p]['ci'][1]:+.2f}]"
                              for p in ("ensemble", "synflow", "grad_norm", "params"))
            print(f"step {k:>5} {name:<8} n={e['n']:<4} {cells}")
    print(f"wrote {args.table_out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.rescore:
            rescore(args.csv)
            return 0
        if args.table is not None:
            return table(args)
        return run(args) if args.run else analyze(args)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
