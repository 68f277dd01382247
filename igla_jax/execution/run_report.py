"""A race's report: its final summary beside the ledger, and a picture of the whole race.

`summary_record` turns a RaceSummary (plus the victory verdict) into JSON; `write_summary` stores it
atomically as `summary.json` in the race's --out folder. `render(run_dir)` draws `report.png` from the
ledger (every trial's validation BPB against steps with promotions and prunes marked, the best BPB so
far against race time, the champion's confirmation runs on validation and test, the accelerators'
verdicts) and writes `report.html`, which embeds the picture with the summary. A race that has not
finished has no summary yet; its report says so and draws what the ledger holds.
"""
from __future__ import annotations

import base64
import dataclasses
import html
import json
import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from igla_jax.evidence.ledger import read_ledger
from igla_jax.evidence.ledger_row import LedgerError

SUMMARY = "summary.json"
PNG = "report.png"
HTML = "report.html"


class ReportError(ValueError):
    """A run folder holds nothing a report can be drawn from (the message names the folder)."""


def _num(x: Any) -> float | None:
    return float(x) if x is not None and math.isfinite(float(x)) else None


def time_split(rows: Sequence[Mapping[str, Any]], race_s: float | None, workers: int = 1,
               ahead: tuple[float, int] | None = None) -> dict[str, Any] | None:
    """Where a live race's time went (issue 23), from its rows' measured `extra.timing`: seconds compiling
    programs, training, evaluating and initialising (a fresh state and its checkpoint; a shape's first one
    compiles JAX's operations one by one), summed over every action, and `other_s`: workers x race time minus
    those (the race's own bookkeeping, checkpoint writes, data, waiting). None when no row measured its time (a
    replay, or a ledger written before the timings were recorded). An action's compile seconds are the ones
    it waited for; ahead = (seconds, shapes) compiled in the background meanwhile (igla_jax.execution.ahead)."""
    timed = [r["extra"]["timing"] for r in rows if isinstance(r.get("extra"), Mapping) and "timing" in r["extra"]]
    if not timed:
        return None
    out: dict[str, Any] = {k: round(math.fsum(float(t.get(k, 0.0)) for t in timed), 3)
                           for k in ("compile_s", "train_s", "eval_s", "init_s")}
    out["actions"] = len(timed)
    if race_s is not None and math.isfinite(race_s) and race_s > 0:
        total = workers * race_s
        out["other_s"] = round(max(0.0, total - out["compile_s"] - out["train_s"] - out["eval_s"] - out["init_s"]), 3)
        out["compile_share"] = round(out["compile_s"] / total, 4)
    if ahead is not None and ahead[1] > 0:
        out["ahead_s"], out["ahead_shapes"] = round(float(ahead[0]), 3), int(ahead[1])
    return out


def time_line(t: Mapping[str, Any] | None) -> str:
    """One line for the end of a race: compile, train, evaluate, other seconds and the compile share."""
    if t is None:
        return "time: not measured (no row carries timings)"
    share = f" ({t['compile_share']:.0%} of the race)" if "compile_share" in t else ""
    other = f", other {t['other_s']:.1f} s" if "other_s" in t else ""
    bg = (f"; compiled ahead in the background: {t['ahead_s']:.1f} s for {t['ahead_shapes']} shapes"
          if t.get("ahead_shapes") else "")
    init = f", initialise {t['init_s']:.1f} s" if t.get("init_s") else ""
    return (f"time: compile {t['compile_s']:.1f} s{share}, train {t['train_s']:.1f} s, evaluate "
            f"{t['eval_s']:.1f} s{init}{other}, over {t['actions']} actions{bg}")


def summary_record(summary: Any, *, run_id: str, preset: str, victory: Any = None,
                   wall_s: float | None = None, final_verdicts: Sequence[tuple[str, Any]] = (),
                   timing: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The JSON form of a race's final summary (igla_jax.search.race_types.RaceSummary) with every verdict; a verdict
    judged after the race on its ledger (`final_verdicts`) is stored as "<name> (final)"."""
    cfg = summary.champion_config
    verdicts = [*summary.verdicts, *((f"{n} (final)", v) for n, v in final_verdicts)]
    return {
        "run_id": run_id, "preset": preset, "phase": summary.phase, "stopped_by": summary.stopped_by,
        "champion": summary.champion, "champion_config": None if cfg is None else cfg.to_dict(),
        "champion_config_id": None if cfg is None else cfg.config_id,
        "champion_bpb": _num(summary.champion_bpb), "champion_step": summary.champion_step,
        "champion_rung": summary.champion_rung,
        "seed_runs": [{"kind": s.kind, "seed": s.seed, "step": s.step, "bpb": _num(s.bpb),
                       "test_bpb": _num(s.test_bpb), "status": s.status, "cost_s": _num(s.cost_s)}
                      for s in summary.seed_runs],
        "reproduced": summary.reproduced,
        "counters": {k: (_num(v) if isinstance(v, float) else v) for k, v in dataclasses.asdict(summary.counters).items()},
        "occupancy": list(summary.occupancy),
        "verdicts": {name: {"enabled": v.enabled, "statistic": _num(v.statistic), "threshold": _num(v.threshold),
                            "reason": v.reason} for name, v in verdicts},
        "victory": None if victory is None else {"accepted": bool(victory.accepted), "mean_test_bpb": _num(victory.mean),
                                                 "p_value": _num(victory.p_value), "reasons": list(victory.reasons)},
        "elapsed_s": _num(summary.elapsed_s), "budget_s": _num(summary.budget_s),
        "reserve_s": _num(summary.reserve_s), "wall_s": _num(wall_s),   # JSON has no inf or nan: null
        "time": None if timing is None else dict(timing),
    }


def write_summary(out: str | os.PathLike, record: Mapping[str, Any]) -> Path:
    """Writes summary.json atomically (a crash leaves the old file or the new one, never half of one)."""
    p = Path(out) / SUMMARY
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=1, sort_keys=True, allow_nan=False) + "\n")
    os.replace(tmp, p)
    return p


def read_rows(run_dir: Path) -> tuple[list[dict[str, Any]], str | None]:
    """This run's ledger rows (the run id race.json names; all rows when it names none), read and checked by
    the ledger's own reader (a crash's torn last line is skipped)."""
    led = run_dir / "ledger.jsonl"
    if not led.exists():
        raise ReportError(f"{run_dir}: no ledger.jsonl here; give the --out folder of a race")
    run_id = None
    spec = run_dir / "race.json"
    if spec.exists():
        run_id = json.loads(spec.read_text()).get("run_id")
    try:
        rows = list(read_ledger(led).rows)
    except LedgerError as e:
        raise ReportError(str(e)) from None
    if run_id is not None:
        rows = [r for r in rows if r.get("run_id") == run_id]
    if not rows:
        raise ReportError(f"{led}: no row of this race yet; nothing to draw")
    return rows, run_id


@dataclasses.dataclass(frozen=True)
class Curves:
    """What the picture draws, read off the ledger."""
    trials: dict[Any, list[tuple[int, float]]]     # trial id -> (step, val BPB) of its search results
    promoted: list[tuple[int, float]]
    pruned: list[tuple[int, float]]
    best: list[tuple[float, float]]                 # (race seconds, best search BPB so far) at each improvement
    confirms: list[dict[str, Any]]                  # confirm and reproduce rows
    champion_trial: Any
    end_s: float


def read_curves(rows: Sequence[Mapping[str, Any]], champion: str | None) -> Curves:
    """The report's series from a race's ledger rows; `champion` is the champion's trial id (the summary's)."""
    trials: dict[Any, list[tuple[int, float]]] = {}
    promoted, pruned, best, confirms = [], [], [], []
    cur, champ_trial, end = math.inf, None, 0.0
    for r in rows:
        ex = r.get("extra") or {}
        t = _num(ex.get("elapsed_s"))
        if t is not None:
            end = max(end, t)
        status, bpb = r["status"], _num(r.get("bpb"))
        if status in ("trained", "diverged") and ex.get("action") == "train":
            if bpb is not None:
                trials.setdefault(ex.get("trial_id"), []).append((int(r["step"]), bpb))
                if champion is not None and ex.get("trial_id") == champion:
                    champ_trial = champion
                if bpb < cur and t is not None:
                    cur = bpb
                    best.append((t, bpb))
        elif status == "promoted" and bpb is not None:
            promoted.append((int(r["step"]), bpb))
        elif status == "pruned" and bpb is not None:
            pruned.append((int(r["step"]), bpb))
        elif ex.get("action") in ("confirm", "reproduce"):
            confirms.append(dict(r))
    return Curves(trials, promoted, pruned, best, confirms, champ_trial, end)


def _fmt(x: Any, nd: int = 4) -> str:
    return "-" if x is None else f"{x:.{nd}f}" if isinstance(x, float) else str(x)


def headline(summary: Mapping[str, Any] | None) -> list[str]:
    """The summary in a few lines (the picture's caption and the HTML page's list)."""
    if summary is None:
        return ["no summary.json: the race has not finished (resume it with --resume); this draws the ledger so far"]
    by = summary.get("stopped_by")
    out = [f"{summary['preset']} race {summary['run_id']}: {summary['phase']}"
           + (f" (stopped by {by})" if by and by != "complete" else "")]
    if summary.get("budget_s"):
        out.append(f"race time {summary['elapsed_s'] or 0:.0f} s of a {summary['budget_s']:.0f} s budget")
    else:
        out.append(f"race time {summary['elapsed_s'] or 0:.0f} s")
    if summary.get("champion"):
        c = summary["champion_config"]
        rung = summary.get("champion_rung")
        out.append(f"champion {summary['champion']} {summary['champion_config_id']} ({c['family']} w{c['width']} d{c['depth']} lr {c['lr']:g}): "
                   f"val BPB {_fmt(summary['champion_bpb'])} at step {summary['champion_step']}"
                   + (f" (rung {rung + 1})" if rung is not None else ""))
        tests = [s["test_bpb"] for s in summary["seed_runs"] if s["kind"] == "confirm" and s["test_bpb"] is not None]
        if tests:
            out.append(f"confirmation: {len(tests)} fresh seeds, test BPB "
                       + ", ".join(f"{t:.4f}" for t in tests) + f" (mean {sum(tests) / len(tests):.4f})")
    else:
        out.append("no champion")
    v = summary.get("victory")
    if v is not None:
        codes = sorted({r.split(": ")[1] if r.startswith("row ") else r.split(":")[0] for r in v["reasons"]})
        out.append("victory predicate: ACCEPTED" if v["accepted"] else
                   f"victory predicate: rejected ({len(v['reasons'])} reasons: {', '.join(codes)}; "
                   "summary.json lists them)")
    return out


def render(run_dir: str | os.PathLike) -> tuple[Path, Path]:
    """Draws report.png and report.html in run_dir from its ledger (and summary.json when present)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    run_dir = Path(run_dir)
    rows, _ = read_rows(run_dir)
    sp = run_dir / SUMMARY
    summary = json.loads(sp.read_text()) if sp.exists() else None
    cv = read_curves(rows, summary.get("champion") if summary else None)
    fig, ax = plt.subplots(2, 2, figsize=(13, 9))
    a = ax[0][0]
    for tid, pts in cv.trials.items():
        pts = sorted(pts)
        champ = tid == cv.champion_trial and tid is not None
        a.plot([p[0] for p in pts], [p[1] for p in pts], "-o", lw=2.5 if champ else 0.8, ms=5 if champ else 2.5,
               color="C3" if champ else "0.45", alpha=1.0 if champ else 0.6, zorder=3 if champ else 1)
    if cv.promoted:
        a.scatter(*zip(*cv.promoted), marker="^", color="C2", s=36, zorder=4, label=f"promoted ({len(cv.promoted)})")
    if cv.pruned:
        a.scatter(*zip(*cv.pruned), marker="x", color="C1", s=30, zorder=4, label=f"pruned ({len(cv.pruned)})")
    a.plot([], [], "-o", color="C3", lw=2.5, label="champion")
    a.set_xscale("log")
    steps = sorted({p[0] for pts in cv.trials.values() for p in pts})
    if steps:
        a.set_xticks(steps, [str(x) for x in steps])
        a.minorticks_off()
    a.set_xlabel("training step (log)")
    a.set_ylabel("validation BPB")
    a.set_title(f"{len(cv.trials)} trials: validation BPB at each rung")
    a.legend(loc="upper right", fontsize=8)
    a = ax[0][1]
    if cv.best:
        ts = [t for t, _ in cv.best] + [cv.end_s]
        bs = [b for _, b in cv.best] + [cv.best[-1][1]]
        a.step(ts, bs, where="post", color="C0")
        a.scatter([t for t, _ in cv.best], [b for _, b in cv.best], color="C0", s=12)
    if summary and summary.get("budget_s"):
        a.axvline(summary["budget_s"], color="k", ls="--", lw=1, label=f"budget {summary['budget_s']:.0f} s")
        a.legend(fontsize=8)
    a.set_xlabel("race time (s; simulated in a replay)")
    a.set_ylabel("best validation BPB so far (any rung)")
    a.set_title("best search result over time")
    a = ax[1][0]
    conf = [r for r in cv.confirms if r["status"] in ("confirmed", "reproduced", "trained")]
    if conf:
        xs = list(range(len(conf)))
        a.bar([x - 0.2 for x in xs], [r["bpb"] or 0 for r in conf], 0.4, color="C0", label="validation")
        a.bar([x + 0.2 for x in xs], [r.get("test_bpb") or 0 for r in conf], 0.4, color="C3", label="test")
        a.set_xticks(xs, [f"{(r.get('extra') or {}).get('action')}\nseed {r['seed']}\nstep {r['step']}"
                          for r in conf], fontsize=8)
        lo = min(v for r in conf for v in (r["bpb"], r.get("test_bpb")) if v is not None)
        hi = max(v for r in conf for v in (r["bpb"], r.get("test_bpb")) if v is not None)
        a.set_ylim(lo - 0.05, hi + 0.05)
        for x, r in zip(xs, conf):
            for dx, v in ((-0.2, r["bpb"]), (0.2, r.get("test_bpb"))):
                if v is not None:
                    a.text(x + dx, v, f"{v:.3f}", ha="center", va="bottom", fontsize=7)
        if summary and summary.get("champion_bpb") is not None:
            a.axhline(summary["champion_bpb"], color="k", ls="--", lw=1,
                      label=f"selected search run (validation) {summary['champion_bpb']:.3f}")
            lo = min(lo, summary["champion_bpb"])
            a.set_ylim(lo - 0.05, hi + 0.05)
        a.legend(fontsize=8)
        a.set_title("the champion's from-scratch runs (test: victory seeds only)")
    else:
        a.text(0.5, 0.5, "no confirmation run (a replay, or the race has not got there)", ha="center",
               va="center", transform=a.transAxes)
        a.set_title("the champion's from-scratch runs")
    a.set_ylabel("BPB")
    a = ax[1][1]
    a.axis("off")
    lines = headline(summary)
    lines.append("")
    verdicts = (summary or {}).get("verdicts") or {}
    lines.append("accelerator verdicts:" if verdicts else "accelerator verdicts: none recorded")
    for name, v in sorted(verdicts.items()):
        why = v["reason"] if len(v["reason"]) <= 150 else v["reason"][:147] + "..."
        lines.append(f"  {name}: {'ON' if v['enabled'] else 'off'}: {why}")
    a.text(0, 1, "\n".join(_wrap(lines, 78)), va="top", ha="left", family="monospace", fontsize=7.5,
           transform=a.transAxes)
    fig.suptitle(f"race report: {run_dir.name}")
    fig.tight_layout()
    png = run_dir / PNG
    fig.savefig(png, dpi=110)
    plt.close(fig)
    page = run_dir / HTML
    img = base64.b64encode(png.read_bytes()).decode()
    items = "".join(f"<li>{html.escape(x)}</li>" for x in lines if x)
    page.write_text(f"<!doctype html><meta charset='utf-8'><title>race report {html.escape(run_dir.name)}</title>"
                    f"<h1>race report: {html.escape(run_dir.name)}</h1><ul>{items}</ul>"
                    f"<img alt='race report' src='data:image/png;base64,{img}' style='max-width:100%'>"
                    f"<p>ledger: {html.escape(str(run_dir / 'ledger.jsonl'))}</p>\n")
    return png, page


def _wrap(lines: Sequence[str], width: int) -> list[str]:
    import textwrap
    out = []
    for x in lines:
        out.extend(textwrap.wrap(x, width, subsequent_indent="    ") or [""])
    return out
