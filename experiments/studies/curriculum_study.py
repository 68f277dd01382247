"""V7 study (seed mode 7): online curriculum vs none, BPB at matched steps, tokens and wall-clock; writes the verdict.

Design (pre-registered: curriculum_configs x curriculum_seeds, 2700 steps): the fixed configs
(STUDY_CONFIGS, printed first), at the tenth/quick preset's shape (context 64, batch 12, head_dim 32), each trained on the
study seeds with and without the curriculum (same configs, same seeds: pairs share the initial
parameters), lr horizon 2700 steps. The seeds of one (config, arm) train as one vmapped
population (`igla_jax.training.train.run_population`), segment by segment along the ladder, the two arms
interleaved segment by segment so that load on the machine hits both alike; each segment's
training seconds exclude compilation (one warm-up call per program first) and evaluation.
Validation BPB at every ladder step (never a minimum over the run).

Figures (per config and arm): BPB at matched optimizer steps (2700); at matched trained tokens
(identical to matched steps: both arms train batch x context tokens per step; the curriculum's
candidate forward tokens are counted apart, and BPB at matched tokens *read* is given too); at
matched wall-clock (`accelerators.curriculum.matched_wallclock`: the overhead is the median over
ladder segments of the two arms' back-to-back seconds-per-step ratio; the faster arm is read at
its last step, the slower at last step / overhead, BPB linear in log(step) between ladder
points); seconds per step of each arm, measured. Verdict: `accelerators.curriculum.curriculum_verdict`.

Resumable: finished segments are appended to <work>/segments.jsonl with their checkpoints under
<work>/ckpt; rerun the same command to continue. --quick: a tiny shape for tests (not judged).

    python -m experiments.curriculum_study [--work runs/curriculum_study] [--quick]
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from accelerators.curriculum import (STUDY_KIND, V7Error, atomic_json, bpb_at_step, brown_forsythe_greater,
                                     curriculum_verdict, default_study_path, default_verdict_path, matched_wallclock,
                                     pooled_variance_ratio, study_from_json, write_v7_verdict)
from igla_jax.evidence.prereg import Prereg, load_prereg, repo_root
from igla_jax.search.search_space import Config

# Fixed before any curriculum result: one config per family at width 64, depth 2 (the quick
# space's middle), lr 3e-3, middle momentum / EMA, warmup 0.02, wd 0.05, no dropout.
STUDY_CONFIGS = (Config("attn", 64, 2, 3e-3, 0.9, 0.02, 0.05, 0.0),
                 Config("jepa", 64, 2, 3e-3, 0.996, 0.02, 0.05, 0.0),
                 Config("hybrid", 64, 2, 3e-3, 0.9, 0.02, 0.05, 0.0))
FIRST_SEED = 100   # study seeds 100, 101, ...: neither victory seeds nor a race's search seed
ARMS = ("baseline", "curriculum")


@dataclasses.dataclass(frozen=True)
class StudySpec:
    """What the study trains: configs, seeds, the evaluation ladder (its last step is the lr horizon), shape."""
    configs: tuple[Config, ...]
    seeds: tuple[int, ...]
    ladder: tuple[int, ...]
    context: int
    batch: int
    head_dim: int
    quick: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"configs": [c.to_dict() for c in self.configs], "seeds": list(self.seeds), "ladder": list(self.ladder),
                "context": self.context, "batch": self.batch, "head_dim": self.head_dim, "quick": self.quick}


def full_spec(prereg: Prereg) -> StudySpec:
    """The pre-registered design: curriculum_configs configs x curriculum_seeds seeds, 2700 steps, ladder every 300."""
    from igla_jax.execution.presets import PRESETS
    ps = PRESETS["tenth"]
    if prereg.curriculum_configs > len(STUDY_CONFIGS):
        raise V7Error(f"curriculum_configs={prereg.curriculum_configs}: only {len(STUDY_CONFIGS)} study configs fixed")
    top = ps.rungs[-1]
    return StudySpec(STUDY_CONFIGS[:prereg.curriculum_configs],
                     tuple(range(FIRST_SEED, FIRST_SEED + prereg.curriculum_seeds)),
                     tuple(range(300, top + 1, 300)), ps.context, ps.batch, ps.space.head_dim)


def quick_spec(configs: int = 1, seeds: int = 2) -> StudySpec:
    """Seconds: tiny models (width 16, head_dim 8, context 16, batch 4), ladder 16 / 32; never judged."""
    cfgs = tuple(dataclasses.replace(c, width=16) for c in STUDY_CONFIGS[:configs])
    return StudySpec(cfgs, tuple(range(FIRST_SEED, FIRST_SEED + seeds)), (16, 32), 16, 4, 8, quick=True)


def _arm_config(c: Config, arm: str) -> Config:
    return dataclasses.replace(c, curriculum=arm == "curriculum")


def _read_segments(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            break   # a torn last line (killed mid-write): that segment is rerun
    return out


def _append(path: Path, row: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(row, allow_nan=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _warm_up(mcs: list, tcs: list, batch: int) -> float:
    """Compiles (and runs once, all steps inactive) the population program of these trials; returns seconds."""
    import jax
    import jax.numpy as jnp
    from igla_jax.training.data import splits
    from igla_jax.training.step import init_state, population_chunk
    from igla_jax.training.train import stack_states
    t0 = time.perf_counter()
    pop = stack_states([init_state(m, t) for m, t in zip(mcs, tcs)])
    pop, _ = population_chunk(pop, jnp.asarray(splits()[0]), jnp.asarray(0, jnp.int32), batch)
    jax.block_until_ready(pop.params)
    return time.perf_counter() - t0


def train_segments(spec: StudySpec, work: Path, prereg: Prereg, say: Callable[[str], None] = print) -> list[dict]:
    """Trains every (config, arm) along the ladder, resuming from <work>; returns all segment rows."""
    from igla_jax.training.step import CurriculumConfig
    from igla_jax.training.train import run_population
    work.mkdir(parents=True, exist_ok=True)
    spec_path = work / "spec.json"
    if spec_path.is_file() and json.loads(spec_path.read_text()) != spec.to_json():
        raise V7Error(f"--work {work}: holds another study ({spec_path}); use a fresh --work")
    atomic_json(spec_path, spec.to_json())
    seg_path = work / "segments.jsonl"
    rows = _read_segments(seg_path)
    done = {(r["config_id"], r["arm"], r["step"]) for r in rows}
    cur_cfg = CurriculumConfig.from_prereg(prereg)
    total = len(spec.configs) * len(ARMS) * len(spec.ladder)
    t_start = time.monotonic()
    n_new = 0
    for c in spec.configs:
        mcs, tcs, warm = {}, {}, set()
        for arm in ARMS:
            ac = _arm_config(c, arm)
            mcs[arm] = [ac.to_model_config(context=spec.context, head_dim=spec.head_dim)] * len(spec.seeds)
            tcs[arm] = [ac.to_train_config(seed=s, total_steps=spec.ladder[-1], batch=spec.batch,
                                           **({"curriculum": cur_cfg} if arm == "curriculum" else {}))
                        for s in spec.seeds]
        for k, step in enumerate(spec.ladder):
            for arm in ARMS:
                if (c.config_id, arm, step) in done:
                    continue
                prev = [r for r in rows if r["config_id"] == c.config_id and r["arm"] == arm]
                if prev and any(s != "ok" for s in prev[-1]["status"]):
                    continue   # a member diverged: this arm stops (its BPB is NaN from there)
                if arm not in warm:
                    say(f"compiling {c.short()} {arm}: {_warm_up(mcs[arm], tcs[arm], spec.batch):.1f} s")
                    warm.add(arm)
                ck = work / "ckpt" / c.config_id / arm
                src = [ck / f"s{s}_{spec.ladder[k - 1]}.msgpack" for s in spec.seeds] if k else None
                dst = [ck / f"s{s}_{step}.msgpack" for s in spec.seeds]
                res = run_population(mcs[arm], tcs[arm], to_step=step, from_checkpoints=src, save_checkpoints=dst)
                row = {"config_id": c.config_id, "arm": arm, "step": step, "wall_s": res[0].wall_s,
                       "bpb": [r.val_bpb for r in res], "status": [r.status for r in res],
                       "train_bits": [r.train_bits for r in res],
                       "candidate_tokens": [r.candidate_tokens for r in res],
                       "learned_candidates": [r.learned_candidates for r in res],
                       "learned_trained": [r.learned_trained for r in res]}
                _append(seg_path, row)
                rows.append(row)
                n_new += 1
                for p in src or []:
                    p.unlink(missing_ok=True)
                finite = [b for b in row["bpb"] if math.isfinite(b)]
                left = total - len(rows)
                el = time.monotonic() - t_start
                eta = f", about {el / n_new * left / 60:.0f} min left" if left else ""
                say(f"[{len(rows)}/{total}] {c.short()} {arm:10s} step {step:5d}: mean val BPB "
                    f"{np.mean(finite) if finite else math.nan:.4f}, {row['wall_s']:.1f} s "
                    f"({row['wall_s'] / (step - (spec.ladder[k - 1] if k else 0)) * 1e3:.2f} ms/step for "
                    f"{len(spec.seeds)} seeds){eta}")
    return rows


def summarise(spec: StudySpec, rows: Sequence[dict], prereg: Prereg) -> dict[str, Any]:
    """The study document: per config and arm the ladder, seconds and BPB; the matched figures; the verdict."""
    configs = []
    top = spec.ladder[-1]
    tok_step = spec.batch * spec.context
    factor = prereg.curriculum_candidate_factor
    for c in spec.configs:
        arms: dict[str, Any] = {}
        for arm in ARMS:
            rs = {r["step"]: r for r in rows if r["config_id"] == c.config_id and r["arm"] == arm}
            missing = [s for s in spec.ladder if s not in rs]
            if missing:
                raise V7Error(f"{c.short()} {arm}: no segment at steps {missing}; rerun the study to finish it")
            seg = [float(rs[s]["wall_s"]) for s in spec.ladder]
            bpb = np.array([rs[s]["bpb"] for s in spec.ladder]).T     # seeds x ladder
            last = rs[top]
            arms[arm] = {"config_id": _arm_config(c, arm).config_id, "segment_s": [round(x, 4) for x in seg],
                         "bpb": [[float(x) for x in b] for b in bpb],
                         "s_per_step": sum(seg) / top, "bpb_at_steps": [float(x) for x in bpb[:, -1]],
                         "tokens_trained": top * tok_step,
                         "tokens_read": top * tok_step * (1 + (factor if arm == "curriculum" else 0)),
                         "candidate_tokens": int(sum(rs[s]["candidate_tokens"][0] for s in spec.ladder)),
                         "learned_candidates": last["learned_candidates"], "learned_trained": last["learned_trained"]}
        overhead, s_base, s_cur = matched_wallclock(spec.ladder, arms["baseline"]["segment_s"],
                                                    arms["curriculum"]["segment_s"])
        for arm, s in (("baseline", s_base), ("curriculum", s_cur)):
            a = arms[arm]
            a["wallclock_step"] = s
            a["bpb_at_wallclock"] = [_at(spec.ladder, b, s) for b in a["bpb"]]
            a["bpb_at_tokens"] = a["bpb_at_steps"]   # same trained tokens per step in both arms
            a["bpb_at_tokens_read"] = [_at(spec.ladder, b, top / (1 + factor)) for b in a["bpb"]] \
                if arm == "curriculum" else a["bpb_at_steps"]
        configs.append({"config": c.to_dict(), "config_id": c.config_id, "short": c.short(),
                        "overhead": overhead,
                        "overhead_of_totals": arms["curriculum"]["s_per_step"] / arms["baseline"]["s_per_step"],
                        **arms})
    doc = {"kind": STUDY_KIND, "spec": spec.to_json(), "prereg_version": prereg.version, "configs": configs}
    study = study_from_json(doc)
    verdict = curriculum_verdict(study, prereg)
    p_var, t_var = brown_forsythe_greater(study.cur_steps, study.base_steps, prereg.curriculum_var_increase_max)
    doc["variance"] = {"ratio": pooled_variance_ratio(study.cur_steps, study.base_steps), "brown_forsythe_p": p_var,
                       "t": t_var, "max_increase": prereg.curriculum_var_increase_max}
    for key, b, c in (("steps", study.base_steps, study.cur_steps), ("wallclock", study.base_wall, study.cur_wall)):
        doc[f"paired_at_{key}"] = _paired(b, c)
    doc["train_s_total"] = round(sum(float(r["wall_s"]) for r in rows), 1)
    doc["verdict"] = dataclasses.asdict(verdict)
    return doc


def _paired(base: Sequence[Sequence[float]], cur: Sequence[Sequence[float]]) -> dict[str, float]:
    """Mean curriculum - baseline BPB over (config, seed) pairs and the one-sided paired t p (H1: lower)."""
    from scipy.stats import ttest_rel
    b, c = np.ravel(np.asarray(base, float)), np.ravel(np.asarray(cur, float))
    ok = np.isfinite(b) & np.isfinite(c)
    if ok.sum() < 2 or not np.any(c[ok] - b[ok]):
        return {"mean_difference": float(np.mean(c[ok] - b[ok])) if ok.any() else math.nan, "p_lower": 1.0,
                "pairs": int(ok.sum())}
    return {"mean_difference": float(np.mean(c[ok] - b[ok])),
            "p_lower": float(ttest_rel(c[ok], b[ok], alternative="less").pvalue), "pairs": int(ok.sum())}


def _at(ladder: Sequence[int], bpb: Sequence[float], s: float) -> float:
    """bpb_at_step, NaN for a diverged seed or a step before the ladder's first point."""
    if s < ladder[0] or not all(math.isfinite(b) for b in bpb):
        return math.nan
    return bpb_at_step(ladder, bpb, s)


def table_lines(doc: dict) -> list[str]:
    """The matched-steps / tokens / wall-clock table, one line per (config, arm), then the pooled tests."""
    def ms(x: Sequence[float]) -> str:
        x = np.asarray(x, float)
        return f"{np.mean(x):.4f} +- {np.std(x, ddof=1):.4f}"
    top = doc["spec"]["ladder"][-1]
    out = [f"{'config':42s} {'arm':10s} {f'BPB@steps({top})':>18s} {'BPB@tokens':>18s} {'BPB@tokens read':>18s} "
           f"{'BPB@wall-clock':>18s} {'at step':>8s} {'ms/step':>8s}"]   # ms/step: of the whole seed population
    for c in doc["configs"]:
        for arm in ARMS:
            a = c[arm]
            out.append(f"{c['short']:42s} {arm:10s} {ms(a['bpb_at_steps']):>18s} {ms(a['bpb_at_tokens']):>18s} "
                       f"{ms(a['bpb_at_tokens_read']):>18s} {ms(a['bpb_at_wallclock']):>18s} "
                       f"{a['wallclock_step']:8.0f} {a['s_per_step'] * 1e3:8.2f}")
        out.append(f"{'':42s} overhead x{c['overhead']:.2f} per step (median of segment ratios; ratio of totals "
                   f"x{c['overhead_of_totals']:.2f}; {len(doc['spec']['seeds'])}-seed populations); curriculum candidate tokens {c['curriculum']['candidate_tokens']:,} "
                   f"(trained {c['curriculum']['tokens_trained']:,}); learned share of candidates "
                   f"{np.mean(c['curriculum']['learned_candidates']):.3f}, of trained {np.mean(c['curriculum']['learned_trained']):.3f}")
    for key in ("steps", "wallclock"):
        g = doc[f"paired_at_{key}"]
        out.append(f"at matched {key}: curriculum - baseline {g['mean_difference']:+.4f} BPB over {g['pairs']} "
                   f"(config, seed) pairs, one-sided paired t p (curriculum lower) {g['p_lower']:.3g}")
    v = doc["variance"]
    out.append(f"variance ratio (curriculum / baseline, pooled) {v['ratio']:.3f}; one-sided Brown-Forsythe p "
               f"{v['brown_forsythe_p']:.3g} for > x{1 + v['max_increase']:g}")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m experiments.curriculum_study", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--work", type=Path, default=None,
                    help="segments and checkpoints (default runs/curriculum_study, runs/curriculum_study_quick with "
                         "--quick); rerun the same command to continue")
    ap.add_argument("--out", type=Path, default=None,
                    help="study file (default assertions/curriculum_study.json; with --quick <work>/study.json)")
    ap.add_argument("--verdict", type=Path, default=None,
                    help="V7 verdict file (default assertions/v7_verdict.json; with --quick <work>/v7_verdict.json)")
    ap.add_argument("--quick", action="store_true", help="tiny shapes and steps, 1 config x 2 seeds (tests; not judged)")
    a = ap.parse_args(argv)
    pr = load_prereg()
    work = a.work or Path("runs") / ("curriculum_study_quick" if a.quick else "curriculum_study")
    out = a.out or (work / "study.json" if a.quick else default_study_path())
    vpath = a.verdict or (work / "v7_verdict.json" if a.quick else default_verdict_path())
    t0 = time.monotonic()
    try:
        spec = quick_spec() if a.quick else full_spec(pr)
        print(f"V7 study: {len(spec.configs)} configs x {len(spec.seeds)} seeds x {len(ARMS)} arms, ladder "
              f"{list(spec.ladder)}, context {spec.context}, batch {spec.batch}; configs: "
              + "; ".join(f"{c.config_id} {c.short()}" for c in spec.configs), flush=True)
        rows = train_segments(spec, work, pr, say=lambda s: print(s, flush=True))
        doc = summarise(spec, rows, pr)
    except V7Error as e:
        print(f"curriculum_study: {e}", file=sys.stderr)
        return 2
    from igla_jax.curves.table import hardware
    from igla_jax.evidence.ledger_row import code_version
    v = code_version()
    doc.update(command="python -m experiments.curriculum_study" + "".join(f" {x}" for x in (argv or sys.argv[1:])),
               commit=v.sha, dirty=v.dirty, hardware=hardware(), wall_s_this_call=round(time.monotonic() - t0, 1))
    atomic_json(out, json.loads(json.dumps(doc), parse_constant=lambda _: None))
    rel = os.path.relpath(out, repo_root()) if out.resolve().is_relative_to(repo_root()) else str(out)
    verdict = curriculum_verdict(study_from_json(doc), pr)
    write_v7_verdict(vpath, verdict, study=rel, study_sha256=hashlib.sha256(out.read_bytes()).hexdigest(), prereg=pr)
    for line in table_lines(doc):
        print(line)
    print(f"V7 {verdict.line()}\nwritten {out} and {vpath} ({time.monotonic() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
