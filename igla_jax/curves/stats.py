"""What a recorded curve table says: counts, best per family, seed spread, rung-to-rung rank agreement, plots."""
from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from scipy import stats

from igla_jax.curves.table import CurveTable


def _at(row: dict[str, Any], step: int) -> float:
    """BPB at a ladder step; a diverged run counts as +inf (worst)."""
    b = row["val_bpb"][row["ladder"].index(step)]
    return math.inf if b is None else float(b)


def primary_rows(table: CurveTable, family: str | None = None) -> list[dict[str, Any]]:
    return [r for r in table.rows if r["seed_role"] == "primary" and (family is None or r["family"] == family)]


def rank_agreement(rows: Sequence[dict[str, Any]], early: int, late: int) -> dict[str, float]:
    """Spearman and Kendall between BPB at `early` and at `late`, and the share of crossing pairs.

    A pair of configs crosses when their order at `early` differs from their order at `late`
    (ties at either step are not counted as pairs). Diverged runs rank last (+inf).
    """
    a = np.array([_at(r, early) for r in rows])
    b = np.array([_at(r, late) for r in rows])
    n = len(rows)
    out = {"n": float(n), "spearman": math.nan, "kendall": math.nan, "crossing_share": math.nan}
    if n < 3:
        return out
    big = 1e9  # rank diverged runs last; scipy needs finite values
    fa, fb = np.where(np.isfinite(a), a, big), np.where(np.isfinite(b), b, big)
    out["spearman"] = float(stats.spearmanr(fa, fb).statistic)
    out["kendall"] = float(stats.kendalltau(fa, fb).statistic)
    cross = pairs = 0
    for i, j in itertools.combinations(range(n), 2):
        da, db = np.sign(fa[i] - fa[j]), np.sign(fb[i] - fb[j])
        if da == 0 or db == 0:
            continue
        pairs += 1
        cross += da != db
    out["crossing_share"] = cross / pairs if pairs else math.nan
    return out


def seed_spread(table: CurveTable, step: int) -> dict[str, Any]:
    """Across-seed standard deviation of BPB at `step` for every config recorded on >= 2 seeds."""
    by_cfg: dict[str, list[float]] = {}
    for r in table.rows:
        v = _at(r, step)
        if math.isfinite(v):
            by_cfg.setdefault(r["config_id"], []).append(v)
    sds = {c: float(np.std(v, ddof=1)) for c, v in by_cfg.items() if len(v) >= 2}
    vals = np.array(list(sds.values()))
    pooled = float(np.sqrt(np.mean(vals ** 2))) if vals.size else math.nan
    return {"configs": len(sds), "pooled_sd": pooled, "median_sd": float(np.median(vals)) if vals.size else math.nan,
            "max_sd": float(vals.max()) if vals.size else math.nan}


def summary(table: CurveTable, rungs: Sequence[int]) -> dict[str, Any]:
    """The table summary that `python -m experiments.curves` prints."""
    top = rungs[-1]
    fams = sorted({r["family"] for r in table.rows})
    out: dict[str, Any] = {"runs": len(table.rows), "families": {}, "rank_vs_top": {}}
    for fam in fams + ["all"]:
        rows = primary_rows(table, None if fam == "all" else fam)
        if fam != "all":
            strata = {s: sum(1 for r in rows if r["stratum"] == s) for s in ("phi", "uniform")}
            ok = [r for r in rows if r["status"] == "ok"]
            best = min(ok, key=lambda r: _at(r, top), default=None)
            out["families"][fam] = {
                "configs": strata, "diverged": sum(r["status"] != "ok" for r in rows),
                "best_top_bpb": _at(best, top) if best else None,
                "best_config": best["config"] if best else None,
                "median_top_bpb": float(np.median([_at(r, top) for r in ok])) if ok else None}
        out["rank_vs_top"][fam] = {str(k): rank_agreement(rows, k, top) for k in rungs[:-1]}
    out["seed_spread_top"] = seed_spread(table, top)
    return out


def plot_curves(table: CurveTable, rungs: Sequence[int], out_dir: Path, stem: str) -> list[Path]:
    """One PNG per family (validation BPB vs step, log x, coloured by stratum) and a rung-1 vs top scatter."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    fams = sorted({r["family"] for r in table.rows})
    colours = {"phi": "tab:orange", "uniform": "tab:blue"}
    fig, axes = plt.subplots(1, len(fams) + 1, figsize=(5 * (len(fams) + 1), 4.2), squeeze=False)
    for ax, fam in zip(axes[0], fams):
        for r in primary_rows(table, fam):
            y = [np.nan if b is None else b for b in r["val_bpb"]]
            ax.plot(r["ladder"], y, color=colours[r["stratum"]], alpha=0.45, lw=1)
        for k in rungs:
            ax.axvline(k, color="grey", lw=0.5, ls=":")
        ax.set_xscale("log")
        ax.set_ylim(2.0, 4.5)
        ax.set_title(f"{fam}: {len(primary_rows(table, fam))} configs")
        ax.set_xlabel("step")
        ax.set_ylabel("validation BPB (bits/byte)")
        for s, c in colours.items():
            ax.plot([], [], color=c, label=f"{s} stratum")
        ax.legend(fontsize=8)
    ax = axes[0][-1]
    rows = [r for r in primary_rows(table) if r["status"] == "ok"]
    for fam, m in zip(fams, "o^s"):
        rs = [r for r in rows if r["family"] == fam]
        ax.scatter([_at(r, rungs[0]) for r in rs], [_at(r, rungs[-1]) for r in rs], marker=m, s=14, label=fam, alpha=0.7)
    ax.set_xlabel(f"BPB at rung 1 (step {rungs[0]})")
    ax.set_ylabel(f"BPB at the top rung (step {rungs[-1]})")
    ag = rank_agreement(rows, rungs[0], rungs[-1])
    ax.set_title(f"rung 1 vs top: Spearman {ag['spearman']:.2f}, crossing {ag['crossing_share']:.0%}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    p = out_dir / f"{stem}.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    paths.append(p)
    return paths
