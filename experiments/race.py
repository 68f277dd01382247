"""The main job: python -m experiments.race --seed 42 [--preset smoke|quick|tenth|full] [--out DIR] [--budget 2h] [--resume].

Size: with --budget the race is an anytime race of that much wall time (simulated time with
--replay): ASHA keeps starting trials until what is left is what the work in flight and the
champion's confirmation need, then confirms the best trial at the highest rung reached; no trial
cap unless --max-trials is given. Without --budget the race is sized by the preset's trial count
(smoke 4, quick 27, tenth and full 81) or --max-trials. A pause is Ctrl-C or a kill: --resume
continues it at any moment, with what is left of the same budget.

ASHA over three families and seven levers with the V5 phi-grid sampler (its falsifier restores the
full grid), an fsynced ledger under --out, a SQLite leaderboard, kill -9 safe --resume, and the
pre-registered victory verdict at the end. With --replay TABLE the same race is answered from a
recorded learning-curve table in about a second (simulated clock, --workers N asynchronous
workers; search trials on the table's primary seed; no confirmation runs, so no victory; every
ledger row is marked as replayed). Environment: IGLA_JAX_CACHE sets the persistent XLA
compilation cache (default ~/.cache/igla_jax/xla; empty disables it).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from rich.console import Console


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m experiments.race", description=__doc__.split("\n\n")[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=42,
                    help="race seed (default 42): drives sampling and tie-breaks, and derives the search seed every "
                         "search trial trains on, which is never a victory seed; the champion is then trained from "
                         "scratch on each victory seed (42, 43, 44) and judged on the test split")
    ap.add_argument("--preset", choices=("smoke", "quick", "tenth", "full"), default="full",
                    help="smoke: seconds (tests); quick: ~5-12 min on 2 CPU cores; tenth: the pre-registered rungs at "
                         "one tenth (100/300/900/2700, 81 trials; the recorded-curve preset); full: pre-registered "
                         "rungs (default)")
    ap.add_argument("--out", type=Path, default=None,
                    help="run directory (default runs/race-<seed>-<preset>; with --replay "
                         "runs/replay-<seed>-<preset>-w<N>)")
    ap.add_argument("--budget", default=None,
                    help="the race's size in wall time, e.g. 90s, 15m, 2h (simulated time with --replay): trials keep "
                         "starting until what is left is what the champion's confirmation needs (three victory seeds "
                         "and the reproduce run, estimated from this race's measured step times, compile included), "
                         "so the race ends with a confirmed champion; no trial cap unless --max-trials. Counted from "
                         "the start and across resumes; --resume without --budget keeps the recorded one")
    ap.add_argument("--max-trials", type=int, default=None, metavar="N",
                    help="cap the trials started (default without --budget: the preset's pre-registered count, "
                         "smoke 4, quick 27, tenth/full 81; with --budget: no cap)")
    ap.add_argument("--resume", action="store_true", help="continue the race recorded in --out's ledger")
    ap.add_argument("--sampler", choices=("phi", "random"), default=None,
                    help="phi: V5 phi-grid with its falsifier (default); random: the full grid (with --replay: "
                         "the table's uniform stratum, the default there; phi is not available in a replay yet)")
    ap.add_argument("--replay", type=Path, default=None, metavar="TABLE",
                    help="answer every action from a recorded curve table (e.g. assertions/curves_tenth.jsonl, its "
                         "manifest beside it) instead of training: the live race, decisions and ledger, in about a "
                         "second; confirmation is off (the table has no victory-seed runs)")
    ap.add_argument("--workers", type=int, default=1,
                    help="simulated workers of a --replay (default 1): actions run asynchronously, promotions as "
                         "results arrive in simulated-finish order; compile seconds charged once per worker and shape. "
                         "A live race (with --executor): Train actions in flight at once, part of the race's "
                         "specification (--resume keeps it)")
    ap.add_argument("--executor", choices=("local", "population", "ray"), default=None,
                    help="where a live race trains: local (default: one action at a time in this process), "
                         "population (same-shape actions submitted together as one vmapped program where that pays: "
                         "accelerators), ray (one Ray task per action on --workers CPUs; needs pip install -e "
                         "'.[ray]'; checkpoints go to --out/ckpt, which every Ray worker must be able to read and "
                         "write). Results reach the race as they arrive and the ledger records that order")
    ap.add_argument("--compile-ahead", choices=("on", "off"), default="on",
                    help="on (default): with the local executor, compile the next trials' programs in a background "
                         "thread while one trains, so fewer trials wait for XLA; it changes no decision and no bit "
                         "(the summary's time line says how much was compiled ahead); off: each trial compiles its "
                         "own programs when it starts")
    ap.add_argument("--deterministic", action="store_true", default=None,
                    help="feed results to the race in action-id order, not arrival order (the default with "
                         "--workers 1), so runs on different executors or worker counts give the same race")
    ap.add_argument("--ray-address", default=None, metavar="ADDR",
                    help="join an existing Ray cluster (e.g. auto, or ray://head:10001) instead of starting a local "
                         "one; every node needs igla_jax installed, and --out (its ckpt/ directory) must be on a "
                         "filesystem every worker can read and write; the ledger is written by this process only")
    ap.add_argument("--mup", choices=("study", "off"), default="study",
                    help="study: V1 muP transfer, on only if the committed coord check passes its falsifier "
                         "(then lr/beta1 come from the width-16 proxy sweep); off: sweep lr at full width")
    ap.add_argument("--zero-cost", choices=("study", "off"), default="study",
                    help="study: V2 zero-cost filter, enabled only if assertions/zero_cost_study.csv passes its "
                         "falsifier (it currently does not, so it only records its verdict); off: no filter")
    ap.add_argument("--ucb", choices=("study", "off"), default="study",
                    help="study: V6 UCB1 family allocator, enabled only by its replay verdict "
                         "(assertions/v6_verdict.json; missing = not judged yet, so round robin allocates); "
                         "off: round robin")
    ap.add_argument("--surrogate", choices=("study", "off"), default="study",
                    help="study: V4 surrogate pruner, enabled only by its replay verdict (assertions/v4_verdict.json, "
                         "judged on the committed tenth table; missing, disabled, another table or another preset = "
                         "it never prunes, the verdict is recorded); off: no pruner")
    ap.add_argument("--bohb", choices=("study", "off"), default="study",
                    help="study: V3 BOHB sampler (density ratio over ASHA's rungs), enabled only by its replay "
                         "verdict (assertions/v3_verdict.json; missing = not judged yet, so sampling stays uniform "
                         "or phi); off: no BOHB")
    ap.add_argument("--curriculum", choices=("off", "on", "force"), default="off",
                    help="V7 online curriculum in the trainer. off (default); on: only if its verdict "
                         "(assertions/v7_verdict.json, from python -m experiments.curriculum_study; missing = not "
                         "judged yet) enables it, else the race trains without it and says so; force: train with "
                         "it whatever the verdict (for studies; recorded as forced)")
    ap.add_argument("--estimate", action="store_true",
                    help="print a calibrated wall-time estimate before the race also for smoke and quick (it is "
                         "printed by default for tenth and full; the calibration takes <= ~30 s)")
    ap.add_argument("--no-estimate", action="store_true",
                    help="skip the wall-time estimate (never run for --replay, or --resume of a race past its search)")
    return ap.parse_args(argv)


def replay_flag_error(args: argparse.Namespace) -> str | None:
    """The flags a replay cannot honour (and --workers without one), as one message; None when they fit."""
    if args.workers < 1:
        return f"--workers {args.workers}: must be >= 1"
    if args.max_trials is not None and args.max_trials < 1:
        return f"--max-trials {args.max_trials}: must be >= 1"
    if args.replay is None:
        if args.workers != 1 and args.executor is None:
            return ("--workers: simulated workers are for --replay only; a live race with N workers names its "
                    "executor: --executor local|population|ray")
        return None
    for flag in ("executor", "deterministic", "ray_address"):
        if getattr(args, flag, None) is not None:
            return f"--{flag.replace('_', '-')} is not available with --replay (the table is the backend)"
    for flag, bad in (("--resume", args.resume),
                      ("--sampler phi", args.sampler == "phi"),
                      ("--curriculum", getattr(args, "curriculum", "off") != "off")):
        if bad:
            why = ("the phi sampler needs the table's phi stratum as its grid; use --sampler random"
                   if flag == "--sampler phi" else "the table records no curriculum curves: V7 is judged live"
                   if flag == "--curriculum" else "a replay takes about a second: rerun it into a fresh --out")
            return f"{flag} is not available with --replay ({why})"
    return None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    err = Console(stderr=True, soft_wrap=True)
    from igla_jax.curves.table import CurveError
    from igla_jax.evidence.leaderboard import LeaderboardError
    from igla_jax.evidence.ledger_row import LedgerError
    from igla_jax.evidence.prereg import PreregError, load_prereg
    from igla_jax.evidence.victory import VictoryError
    from igla_jax.execution.executor import ResumeError
    from igla_jax.execution.presets import PRESETS, RaceSetupError, parse_budget
    from igla_jax.execution.race_runner import run_race, run_replay
    from igla_jax.execution.runner import enable_compile_cache
    from igla_jax.training.checkpoint import CheckpointError
    from igla_jax.training.data import DataError
    replay = args.replay is not None
    bad = replay_flag_error(args)
    if bad:
        print(f"error: {bad}", file=sys.stderr)
        return 2
    from igla_jax.execution.backends_live import check_executor
    from igla_jax.execution.runner import BackendError
    try:  # before any work: --executor ray without Ray says how to install it
        check_executor(args.executor or "local", ray_address=args.ray_address)
    except BackendError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    args.sampler = args.sampler or ("random" if replay else "phi")
    try:
        budget_s = parse_budget(args.budget) if args.budget is not None else None
        prereg = load_prereg()
    except (RaceSetupError, PreregError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = args.out if args.out is not None else Path("runs") / (
        f"replay-{args.seed}-{args.preset}-w{args.workers}" if replay else f"race-{args.seed}-{args.preset}")
    xla_cache = os.environ.get("IGLA_JAX_CACHE", str(Path.home() / ".cache" / "igla_jax" / "xla"))
    if not replay:
        enable_compile_cache(xla_cache)
    from accelerators.phi_grid import PhiSampler
    from igla_jax.evidence.prereg import repo_root
    from igla_jax.execution.race_report import LiveProgress, print_summary
    from igla_jax.execution.run_dir import file_sha256
    from igla_jax.search.interfaces import RandomSampler
    space = PRESETS[args.preset].space
    if args.resume and budget_s is None:
        from igla_jax.execution.run_dir import recorded_budget
        budget_s = recorded_budget(out)
    search_seed = PRESETS[args.preset].race_config(prereg, args.seed).search_seed
    sources = {"prereg": prereg.source}
    if replay:
        from igla_jax.execution.replay import load_table, table_space
        try:
            table = load_table(args.replay)
        except ValueError as e:  # CurveError, or a config the table cannot hold
            print(f"error: --replay {args.replay}: {e}", file=sys.stderr)
            return 2
        search_seed = table.primary_seed  # a replay's search trials are the table's primary-seed runs
        base = RandomSampler(table_space(table, strata=("uniform",), head_dim=space.head_dim))
    else:
        base = PhiSampler(prereg, space=space) if args.sampler == "phi" else RandomSampler(space)
    sampler = base
    if args.bohb == "study":
        from accelerators.bohb import BOHBSampler, V3Error, default_verdict_path as v3_path, load_v3_verdict
        try:
            model_space = table_space(table, strata=("uniform",), head_dim=space.head_dim) if replay else space
            sampler = BOHBSampler(prereg, model_space, load_v3_verdict(prereg), fallback=base)
        except V3Error as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        sources["v3_verdict"] = str(v3_path())
    if args.mup == "study":
        from accelerators.mup_sampler import MupTransferSampler, load_coord_check
        from accelerators.mup_transfer import load_study, mup_verdict
        from igla_jax.evidence.prereg import repo_root
        try:
            cc_path = repo_root() / "coord_check" / "plots" / "coord_check_mup.json"
            cc = load_coord_check(cc_path)
            sampler = MupTransferSampler(sampler, mup_verdict(cc, prereg), load_study())
            sources.update(mup_coord_check=str(cc_path), mup_transfer=str(repo_root() / "assertions" / "mup_transfer.json"))
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    if args.curriculum != "off":  # V7: configs carry curriculum=True only when its verdict (or force) says so
        from accelerators.curriculum import CurriculumSampler, V7Error, default_verdict_path as v7_path, load_v7_verdict
        try:
            sampler = CurriculumSampler(sampler, load_v7_verdict(prereg), force=args.curriculum == "force")
        except V7Error as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        sources["v7_verdict"] = str(v7_path())
        print(sampler.report(), flush=True)
    zc_filter = None
    if args.zero_cost == "study":
        from accelerators.zero_cost import ZeroCostFilter, rows_from_csv
        from igla_jax.evidence.prereg import repo_root
        ps = PRESETS[args.preset]
        try:
            zc_path = repo_root() / "assertions" / "zero_cost_study.csv"
            rows = rows_from_csv(zc_path)
            zc_filter = ZeroCostFilter.from_study(rows, prereg, context=ps.context, batch=ps.batch,
                                                  seed=search_seed, head_dim=space.head_dim)
            sources["zero_cost_study"] = str(zc_path)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    allocator = None
    if args.ucb == "study":
        from accelerators.ucb import UCB1Allocator, V6Error, default_verdict_path, load_v6_verdict
        try:
            allocator = UCB1Allocator.from_prereg(prereg, load_v6_verdict(prereg))
        except V6Error as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        sources["v6_verdict"] = str(default_verdict_path())
    pruner = None
    if args.surrogate == "study":  # xgboost is imported only when the verdict enables V4
        from accelerators import surrogate as v4
        try:
            pruner = v4.live_pruner(prereg, preset=args.preset)
        except ValueError as e:  # V4Error, CurveError
            print(f"error: {e}", file=sys.stderr)
            return 2
        sources["v4_verdict"] = str(v4.default_verdict_path())
    ps = PRESETS[args.preset]
    # by default only the long presets pay for the calibration (it would be ~25 % of a quick race)
    if budget_s is not None:
        cap = f", at most {args.max_trials} trials" if args.max_trials is not None else ", no trial cap"
        print(f"an anytime race of {args.budget or f'{budget_s:g}s'} ({'simulated' if replay else 'wall'} time"
              f"{cap}; rungs {list(ps.race_config(prereg, args.seed).rungs)}): "
              + ("no confirmation in a replay, so no reserve is taken" if replay else
                 "trials start until what is left is the champion's confirmation"), flush=True)
    elif not (replay or args.no_estimate or (args.preset in ("smoke", "quick") and not args.estimate)):
        from igla_jax.execution.estimate import confirming_or_done, race_estimate_lines
        if not (args.resume and confirming_or_done(out)):
            for line in race_estimate_lines(ps.space, ps.race_config(prereg, args.seed), preset=args.preset,
                                            context=ps.context, batch=ps.batch):
                print(line, flush=True)
    # a replay takes about a second: no live panel
    progress = None if replay else LiveProgress(err, preset=args.preset)
    close = progress.close if progress is not None else (lambda: None)
    try:
        spec_extra = {"flags": {"sampler": args.sampler, "mup": args.mup, "zero_cost": args.zero_cost,
                                "ucb": args.ucb, "bohb": args.bohb,
                                "surrogate": args.surrogate,
                                **({"curriculum": args.curriculum} if args.curriculum != "off" else {})},
                      "verdict_sources": {k: file_sha256(v) for k, v in sorted(sources.items())}}
        if replay:
            outcome = run_replay(seed=args.seed, preset=args.preset, table=table, out=out, workers=args.workers,
                                 budget_s=budget_s, max_trials=args.max_trials,
                                 prereg=prereg, sampler=sampler, filter=zc_filter, allocator=allocator,
                                 pruner=pruner, spec_extra=spec_extra, report=False)
        else:
            outcome = run_race(seed=args.seed, preset=args.preset, out=out, budget_s=budget_s, resume=args.resume,
                               max_trials=args.max_trials,
                               prereg=prereg, sampler=sampler, filter=zc_filter, allocator=allocator,
                               pruner=pruner, progress=progress, spec_extra=spec_extra,
                               executor=args.executor or "local", workers=args.workers,
                               deterministic=args.deterministic, ray_address=args.ray_address,
                               compile_cache=xla_cache or None, compile_ahead=args.compile_ahead == "on",
                               report=False)
    except (RaceSetupError, ResumeError, LedgerError, LeaderboardError, CheckpointError, DataError,
            VictoryError, CurveError, BackendError, OSError) as e:
        close()
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        close()
        print(f"interrupted; continue with --out {out} --resume", file=sys.stderr)
        return 130
    close()
    final = ()
    if args.sampler == "phi":
        from accelerators.phi_grid import ledger_phi_verdict
        final = ((base.name, ledger_phi_verdict(outcome.rows, prereg, space=space,
                                                max_trials=outcome.state.config.max_trials,
                                                rungs=outcome.state.config.rungs)),)
    print_summary(Console(soft_wrap=True), outcome, final)
    if outcome.out is not None:
        from igla_jax.execution.race_runner import write_report
        png = write_report(Path(outcome.out), outcome.summary, run_id=outcome.run_id, preset=outcome.preset,
                           victory=outcome.victory, wall_s=outcome.wall_s, final_verdicts=final,
                           workers=outcome.state.config.workers, ahead=outcome.compiled_ahead)
        if png is not None:
            print(f"report: {png} (and report.html beside it; redraw: python -m experiments.report {outcome.out})")
    if replay:
        print(f"replayed from {outcome.table} (sha256 {outcome.table_sha256[:12]}): simulated wall time "
              f"{outcome.sim_s:.1f} s on {outcome.workers} worker(s) (compiling: {outcome.compile_s:.1f} "
              "worker-seconds); "
              f"search seed {outcome.state.config.search_seed} = the table's primary seed; no confirmation runs "
              f"(the table records no victory-seed runs), so victory cannot be judged; {outcome.wall_s:.2f} s real")
    if outcome.summary.stopped_by == "deadline":
        print(f"stopped before the end; continue with: python -m experiments.race --seed {args.seed} "
              f"--preset {args.preset} --out {out} --resume")
    return 0


if __name__ == "__main__":
    sys.exit(main())
