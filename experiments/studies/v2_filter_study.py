"""Does a zero-cost proxy add anything to parameter count? (issue 24, V2)

On every primary-seed config of a recorded curve table, this study compares two pre-rung filters of
the race's shape: a pool of `filter_score_pool` configs, of which the top share `1 -
proxy_drop_fraction` is kept (both pre-registered), ranked by

- **params**: the non-embedding parameter count alone (higher kept), and
- **params+P**: the mean of the two within-pool ranks of parameter count and of proxy P (synflow,
  grad_norm or their ensemble; higher kept), ties broken by config id as the race's filter does.

A filter's loss on one pool is its *pool regret*: the best true top-rung BPB among the kept configs
minus the best in the pool (true BPB as in the harness: the mean over the truth file's extra seeds
where recorded, else the table's mean; a config that diverged everywhere counts as the uniform
predictor's 8 BPB). The configs are split into disjoint pools by a seeded permutation; the verdict
reads permutation 0 alone (its pools are independent): params+P "adds something" when its pool
regrets are below params' by a paired one-sided Wilcoxon test at alpha / bonferroni_n, and the
mean pool regrets and that test's pass rate over all --permutations are reported beside it.

    python -m experiments.v2_filter_study --table assertions/curves_tenth.jsonl [--permutations 100]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
COMBOS = ("synflow", "grad_norm", "ensemble")


def keep_top(ids: Sequence[str], score: np.ndarray, n_keep: int) -> np.ndarray:
    """Indices of the n_keep highest scores, ties broken by config id (as `ZeroCostFilter.keep_top`)."""
    order = sorted(range(len(ids)), key=lambda i: (-float(score[i]), ids[i]))
    return np.array(order[:n_keep], dtype=np.int64)


def pool_regrets(ids: Sequence[str], true: np.ndarray, scores: Mapping[str, np.ndarray], *, pool: int,
                 n_keep: int, seed: int) -> dict[str, np.ndarray]:
    """Per disjoint pool of one seeded permutation: each filter's pool regret (filters 'params', 'params+P')."""
    from accelerators.zero_cost_proxies import mean_rank
    n = len(ids)
    if pool < 1 or n_keep < 1 or n_keep > pool or n < pool:
        raise ValueError(f"pool_regrets: need 1 <= n_keep <= pool <= configs, got n_keep={n_keep}, pool={pool}, "
                         f"configs={n}")
    perm = np.random.default_rng([int(seed), 0x5F2]).permutation(n)
    out: dict[str, list[float]] = {"params": [], **{f"params+{p}": [] for p in scores if p != "params"}}
    for k in range(n // pool):
        idx = perm[k * pool:(k + 1) * pool]
        pid = [ids[i] for i in idx]
        best = float(true[idx].min())
        ranked = {"params": scores["params"][idx]}
        for p in scores:
            if p != "params":
                own = scores[p][idx]
                if p == "ensemble" and {"synflow", "grad_norm"} <= set(scores):   # re-ranked within the pool
                    own = mean_rank(scores["synflow"][idx], scores["grad_norm"][idx])
                ranked[f"params+{p}"] = mean_rank(scores["params"][idx], own)
        for name, s in ranked.items():
            out[name].append(float(true[idx][keep_top(pid, s, n_keep)].min()) - best)
    return {k: np.array(v) for k, v in out.items()}


def compare(ids: Sequence[str], true: np.ndarray, scores: Mapping[str, np.ndarray], *, pool: int, n_keep: int,
            permutations: int, alpha: float, seed: int = 0) -> dict[str, Any]:
    """The study: per params+P, permutation 0's paired test against params, and the means over permutations."""
    from igla_jax.evidence.verdict import wilcoxon_less
    if permutations < 1:
        raise ValueError(f"compare: permutations must be >= 1, got {permutations}")
    runs = [pool_regrets(ids, true, scores, pool=pool, n_keep=n_keep, seed=seed + j) for j in range(permutations)]
    res: dict[str, Any] = {"pools_per_permutation": len(runs[0]["params"]), "filters": {}}
    ref = [r["params"] for r in runs]
    for name in runs[0]:
        mine = [r[name] for r in runs]
        ps = [1.0 if name == "params" else wilcoxon_less(list(m), list(b)) for m, b in zip(mine, ref)]
        res["filters"][name] = {
            "mean_pool_regret": float(np.mean([m.mean() for m in mine])),
            "pool_best_kept": float(np.mean([np.mean(m == 0.0) for m in mine])),
            "p_vs_params": ps[0], "adds": name != "params" and ps[0] < alpha,
            "pass_rate_over_permutations": float(np.mean([p < alpha for p in ps])) if name != "params" else None}
    res["verdict"] = ("a proxy adds to parameter count: " + ", ".join(k for k, v in res["filters"].items() if v["adds"])
                      if any(v["adds"] for v in res["filters"].values())
                      else "no proxy adds anything to parameter count at alpha / bonferroni_n: V2 stays off")
    return res


def control_scores(true: np.ndarray, params: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """The test's two controls, read like proxies: 'placebo' (a seeded uniform score, no information; the
    test should pass it in about alpha of the permutations) and 'informed' (minus the true BPB plus
    seeded noise of 0.1 BPB: a proxy that knows; the test's power)."""
    rng = np.random.default_rng([int(seed), 0x9A])
    return {"params": params, "placebo": rng.uniform(size=true.size),
            "informed": -true + 0.1 * rng.standard_normal(true.size)}


def table_inputs(table_path: Path) -> tuple[list[str], np.ndarray, dict[str, np.ndarray], float]:
    """(config ids, true BPBs, every proxy per config, seconds spent scoring) of a table's primary-seed configs."""
    from accelerators.zero_cost_proxies import score_models
    from experiments import harness as H
    from igla_jax import curves
    from igla_jax.curves import truth
    from igla_jax.evidence.prereg import UNIFORM_BPB
    from igla_jax.execution.replay import load_table
    from igla_jax.search.search_space import config_from_dict
    m = curves.read_manifest(curves.manifest_path(table_path))
    rows = list(curves.read_table(table_path).rows)
    extra = truth.true_bpb(rows + list(curves.read_table(truth.truth_path(table_path), missing_ok=True).rows),
                           extra_seeds=m["seeds"]["extra"])
    tr = H.table_truth(load_table(table_path), extra)
    prim = {r["config_id"]: r for r in rows if r["seed_role"] == "primary"}
    ids = list(tr.ids)
    cfgs = [config_from_dict(prim[c]["config"], source=f"table config {c}").to_model_config(
        context=m["context"], head_dim=m["space"]["head_dim"]) for c in ids]
    print(f"scoring {len(ids)} configs' proxies at init (about 4-5 min on 2 CPU cores)...", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    sc = score_models(cfgs, [int(prim[c]["seed"]) for c in ids], batch=m["batch"])
    true = np.where(np.isfinite(tr.true_bpb), tr.true_bpb, UNIFORM_BPB)
    secs = round(time.perf_counter() - t0, 1)
    return ids, true, {p: np.asarray(sc[p], np.float64) for p in ("params", *COMBOS)}, secs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m experiments.v2_filter_study", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--table", type=Path, default=ROOT / "assertions" / "curves_tenth.jsonl",
                    help="a recorded curve table (default: the development table)")
    ap.add_argument("--permutations", type=int, default=100, help="seeded splits into disjoint pools (default 100)")
    ap.add_argument("--seed", type=int, default=0, help="seed of permutation 0 (default 0)")
    ap.add_argument("--out", type=Path, default=None, help="write the result as JSON here")
    a = ap.parse_args(argv)
    if a.permutations < 1:
        ap.error(f"--permutations must be >= 1, got {a.permutations}")
    from accelerators.zero_cost import n_kept
    from igla_jax.curves.table import CurveError
    from igla_jax.evidence.prereg import load_prereg
    pr = load_prereg()
    try:
        ids, true, scores, secs = table_inputs(a.table)
        pool, keep = pr.filter_score_pool, n_kept(pr.filter_score_pool, pr.proxy_drop_fraction)
        res = compare(ids, true, scores, pool=pool, n_keep=keep, permutations=a.permutations,
                      alpha=pr.alpha_per_arm, seed=a.seed)
        ctl = compare(ids, true, control_scores(true, scores["params"], a.seed), pool=pool, n_keep=keep,
                      permutations=a.permutations, alpha=pr.alpha_per_arm, seed=a.seed)["filters"]
        res["controls"] = {k: v for k, v in ctl.items() if k != "params"}
    except (CurveError, OSError, ValueError, KeyError) as e:
        print(f"error: {a.table}: {e}", file=sys.stderr)
        return 2
    res.update(table=str(a.table), table_sha256=hashlib.sha256(a.table.read_bytes()).hexdigest(), configs=len(ids),
               pool=pool, kept=keep, alpha_per_arm=pr.alpha_per_arm, scoring_s=secs,
               command=f"python -m experiments.v2_filter_study --table {a.table} --permutations {a.permutations} "
                       f"--seed {a.seed}")
    print(f"{a.table}: {len(ids)} configs scored in {secs} s; pools of {pool}, {keep} kept; "
          f"{res['pools_per_permutation']} disjoint pools x {a.permutations} permutations")
    print(f"{'filter':<26} {'mean pool regret':>16} {'pool best kept':>14} {'p vs params':>12} {'pass rate':>9}")
    rows = list(res["filters"].items()) + [(f"{k} (control)", v) for k, v in res["controls"].items()]
    for k, v in rows:
        pr_ = "-" if v["pass_rate_over_permutations"] is None else f"{v['pass_rate_over_permutations']:.0%}"
        print(f"{k:<26} {v['mean_pool_regret']:>16.4f} {v['pool_best_kept']:>14.0%} "
              f"{v['p_vs_params']:>12.3g} {pr_:>9}")
    print(res["verdict"])
    if a.out is not None:
        res["per_config"] = {c: {"true_bpb": float(true[i]), **{p: float(v[i]) for p, v in scores.items()}}
                             for i, c in enumerate(ids)}
        a.out.write_text(json.dumps(res, indent=1) + "\n")
        print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
