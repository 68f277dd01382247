"""Record the learning-curve table: real training curves of a race preset, for replayed races.

  python -m experiments.record_curves --preset tenth                 # the whole table (hours on 2 cores; resumable)
  python -m experiments.record_curves --preset tenth --budget 30m    # record for 30 minutes, then stop cleanly
  python -m experiments.record_curves --preset tenth --limit 6       # six runs
  python -m experiments.record_curves --preset tenth --plan-seed 1 --per-stratum 20 --extra-every 4
                                                                     # the held-out table (prereg v9)

Per family: --per-stratum configs from the V5 phi-grid and as many drawn uniformly from the full grid
(disjoint strata); every --extra-every-th config of a stratum also runs on two extra seeds. Each run
trains to the preset's last rung on the primary seed (the search seed of race seed 42) and evaluates
validation BPB at the ladder (rungs and the points between). Rows are appended and fsynced one run at
a time (a kill loses at most the run in flight; rerun the same command to continue), and the
manifest beside the table is rewritten after each run (command, commit, hardware, preset, ladder,
strata, counts, sha256). Format: igla_jax/curves/table.py.

--plan-seed N (default 0, the committed development table) draws another set of configs; with N != 0
the configs of --exclude-table (default the committed assertions/curves_<preset>.jsonl) are drawn by
neither stratum, the table goes to assertions/curves_<preset>_plan<N>.jsonl, and no BPB is printed:
a held-out table is read once, by the judging run a pre-registration amendment names.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from igla_jax.evidence.prereg import repo_root

DEFAULT_DIR = repo_root() / "assertions"


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="python -m experiments.record_curves", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--preset", default="tenth", help="race preset whose trials are recorded (default tenth)")
    ap.add_argument("--out", type=Path, default=None, help="table path (default assertions/curves_<preset>.jsonl)")
    ap.add_argument("--families", nargs="+", default=["attn", "jepa", "hybrid"], help="families (default all three)")
    ap.add_argument("--per-stratum", type=int, default=64, help="configs per family and stratum (default 64)")
    ap.add_argument("--extra-every", type=int, default=9,
                    help="every n-th config of a stratum also runs on the two extra seeds (default 9: ~11 %%)")
    ap.add_argument("--limit", type=int, default=None, help="record at most this many runs in this call")
    ap.add_argument("--budget", default=None, help="stop before starting a run once this much time passed (90s, 30m, 2h)")
    ap.add_argument("--plan-seed", type=int, default=0,
                    help="which draw of configs (default 0: the committed table); N != 0 is a held-out table")
    ap.add_argument("--exclude-table", type=Path, default=None,
                    help="a table whose configs are not drawn (default with --plan-seed N != 0: the committed one)")
    ap.add_argument("--dry-run", action="store_true", help="print the plan's size and estimated cost, train nothing")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from igla_jax.execution.presets import PRESETS, RaceSetupError, parse_budget
    if args.preset not in PRESETS:
        print(f"error: --preset {args.preset!r}: choose one of {', '.join(PRESETS)}", file=sys.stderr)
        return 2
    try:
        budget = parse_budget(args.budget) if args.budget else None
    except RaceSetupError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.per_stratum < 1 or args.extra_every < 0 or (args.limit is not None and args.limit < 0):
        print("error: --per-stratum must be >= 1, --extra-every and --limit >= 0", file=sys.stderr)
        return 2
    from accelerators.phi_grid import phi_grid
    from igla_jax import curves
    from igla_jax.evidence.ledger_row import code_version
    from igla_jax.evidence.prereg import load_prereg
    from igla_jax.search.race_types import derive_search_seed
    pr = load_prereg()
    ps = PRESETS[args.preset]
    rc = ps.race_config(pr, 42)
    seeds = [derive_search_seed(s, pr.seeds) for s in (42, 43, 44)]
    ladder = curves.ladder_for(rc.rungs)
    held_out = args.plan_seed != 0
    dev_table = DEFAULT_DIR / f"curves_{args.preset}.jsonl"
    table = args.out or (DEFAULT_DIR / f"curves_{args.preset}_plan{args.plan_seed}.jsonl" if held_out else dev_table)
    manifest = table.with_name(table.name.replace(".jsonl", "") + ".manifest.json")
    exclude_path = args.exclude_table or (dev_table if held_out else None)
    exclude: frozenset[str] = frozenset()
    if exclude_path is not None:
        try:
            ex_rows = curves.read_table(exclude_path).rows
        except curves.CurveError as e:
            print(f"error: --exclude-table: {e}", file=sys.stderr)
            return 2
        exclude = frozenset(r["config_id"] for r in ex_rows)
    plan = curves.plan(ps.space, lambda f: phi_grid(f, ps.space), families=args.families,
                       per_stratum=args.per_stratum, extra_every=args.extra_every, primary_seed=seeds[0],
                       extra_seeds=seeds[1:], seed=args.plan_seed, exclude=exclude)
    short = [f"{f}/{st}" for f in args.families for st in ("phi", "uniform")
             if sum(r.config.family == f and r.stratum == st and r.seed_role == "primary" for r in plan)
             < args.per_stratum]
    if short:
        print(f"note: fewer than {args.per_stratum} configs left to draw in {', '.join(short)}", file=sys.stderr)
    if args.dry_run:
        print(f"{len(plan)} runs planned ({sum(r.seed_role == 'primary' for r in plan)} configs) into {table}; "
              f"plan seed {args.plan_seed}, {len(exclude)} configs excluded"
              + (f" ({exclude_path})" if exclude_path else ""))
        return 0
    writer = curves.TableWriter(table)
    todo = [r for r in plan if (r.config.config_id, r.seed) not in writer.done]
    version = code_version()
    import hashlib
    import json
    prev = json.loads(manifest.read_text()) if manifest.exists() else {}
    plan_spec = {"preset": args.preset, "families": list(args.families), "per_stratum": args.per_stratum,
                 "extra_every": args.extra_every}
    if held_out or exclude_path is not None:   # the committed table's manifest predates these keys
        plan_spec.update(plan_seed=args.plan_seed, exclude_table=None if exclude_path is None else exclude_path.name,
                         exclude_sha256=None if exclude_path is None
                         else hashlib.sha256(exclude_path.read_bytes()).hexdigest())
    if prev and prev.get("plan", plan_spec) != plan_spec:
        diff = "; ".join(f"{k}: recorded {prev['plan'].get(k)!r}, now {v!r}" for k, v in plan_spec.items()
                         if prev["plan"].get(k) != v)
        print(f"error: {manifest} was recorded with another plan ({diff}); continue with the original flags "
              "or record into another --out", file=sys.stderr)
        return 2
    hw = curves.hardware()
    sessions = prev.get("hardware_sessions", [prev["hardware"]] if "hardware" in prev else [])
    if hw not in sessions:
        sessions.append(hw)
    command = "python -m experiments.record_curves " + " ".join(argv if argv is not None else sys.argv[1:])
    commands = prev.get("commands", [prev["command"]] if "command" in prev else [])
    if command not in commands:
        commands.append(command)
    info = {"commands": commands,
            "preset": args.preset, "rungs": list(rc.rungs), "ladder": list(ladder), "lr_horizon": rc.rungs[-1],
            "context": ps.context, "batch": ps.batch, "space": {k: list(v) if isinstance(v, tuple) else v
                                                               for k, v in vars(ps.space).items()},
            "strata": {"phi": "configs of the V5 phi-grid (accelerators.phi_grid.phi_grid)",
                       "uniform": "uniform draws from the full grid minus the phi-grid; baselines and uniform "
                                  "samplers draw only from here"},
            "seeds": {"primary": seeds[0], "extra": seeds[1:],
                      "derivation": "search seeds of race seeds 42, 43, 44 (igla_jax.race_types.derive_search_seed)"},
            "per_stratum": args.per_stratum, "extra_every": args.extra_every, "planned_runs": len(plan),
            "plan": plan_spec, "commits": sorted(set(prev.get("commits", [])) | {version.sha}),
            "hardware_sessions": sessions,
            "compile_s": prev.get("compile_s", {})}
    print(f"{len(plan) - len(todo)} of {len(plan)} runs already recorded in {table}; {len(todo)} to go", file=sys.stderr)
    t_start = time.monotonic()
    done = 0
    warmed: set[str] = set()
    for run in todo:
        if args.limit is not None and done >= args.limit:
            break
        if budget is not None and time.monotonic() - t_start >= budget:
            print("budget reached; rerun the same command to continue", file=sys.stderr)
            break
        shape = curves.shape_key(run.config)
        if shape not in warmed:  # compile outside the timed segments; the first measurement is kept
            c = curves.warm_shape(run.config, context=ps.context, batch=ps.batch, head_dim=ps.space.head_dim,
                                  horizon=rc.rungs[-1])
            info["compile_s"].setdefault(shape, c)
            warmed.add(shape)
        t0 = time.monotonic()
        row = curves.record_run(run, context=ps.context, batch=ps.batch, head_dim=ps.space.head_dim,
                                horizon=rc.rungs[-1], ladder=ladder, version=version)
        writer.append(row)
        curves.write_manifest(manifest, table, info)
        done += 1
        b = row["val_bpb"][-1]
        seen = "(BPB not shown: a held-out table)" if held_out else f"val BPB @{ladder[-1]} {b if b is None else round(b, 4)}"
        print(f"[{len(plan) - len(todo) + done}/{len(plan)}] {run.config.short()} {run.stratum} seed {run.seed}: "
              f"{row['status']} {seen} ({time.monotonic() - t0:.1f} s)", file=sys.stderr, flush=True)
    curves.write_manifest(manifest, table, info)
    return 0


if __name__ == "__main__":
    sys.exit(main())
