"""V1 muTransfer: tune (lr, beta1) on a width-16 proxy, reuse it at full width, and V1's falsifiers.

Study (Tensor Programs V, Yang et al. 2022, "muTransfer"): at the proxy width, sweep a 5 x 5 grid
of (lr, beta1), lr in 2x steps, for a short fixed budget; the best point is the one with the
lowest final training loss (mean training cross-entropy in bits over the last compiled chunk of
32 steps; each step sees a fresh batch, so it is not a memorisation score). At each target
width (128, 256) only the lr axis is swept, at the proxy's best beta1 (5 runs, to fit the CPU
budget). The transfer holds for a family when the target's best lr lies within
prereg.lr_transfer_max_shift grid steps (2x each; 1 in pre-registration v2) of the proxy's. The
same study under the standard parametrization ("sp") is the control.

Falsifiers: `mup_verdict` (coord check: any |slope| >= prereg.mup_slope_max disables V1) and
`transfer_verdict` (a target's best lr more than prereg.lr_transfer_max_shift grid steps from the
proxy's disables it). Both are deterministic bounds on measured quantities, not statistical tests,
so the per-arm level alpha / bonferroni_n does not apply to them.
`transfer_lr` is what the race calls, when V1 is enabled, to set lr and beta1 of full-width trials.
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from igla_jax.evidence.prereg import Prereg, load_prereg, repo_root
from igla_jax.evidence.verdict import Verdict
from igla_jax.training.models import FAMILIES, ConfigError, ModelConfig
from igla_jax.training.step import TrainConfig, init_state
from igla_jax.training.train import train_state_to

LR_GRID = (2.5e-3, 5e-3, 1e-2, 2e-2, 4e-2)        # 2x steps; a pilot put the width-16 muP optimum mid-grid
BETA1_GRID = (0.6, 0.8, 0.9, 0.95, 0.975)          # 1 - beta1 in 2x steps
STUDY_VERSION = 1


def default_study_path() -> Path:
    return repo_root() / "assertions" / "mup_transfer.json"


class TransferError(ValueError):
    """The transfer study is missing, malformed or does not cover what was asked; the message says which."""


@dataclasses.dataclass(frozen=True)
class TransferConfig:
    """Grid, widths and training budget of the transfer study."""
    families: tuple[str, ...] = FAMILIES
    params: tuple[str, ...] = ("mup", "sp")
    proxy_width: int = 16
    target_widths: tuple[int, ...] = (128, 256)
    lrs: tuple[float, ...] = LR_GRID
    beta1s: tuple[float, ...] = BETA1_GRID
    steps: int = 128     # with batch 12 x context 32: the whole study fits ~25 min on 2 shared cores
    batch: int = 12
    context: int = 32
    depth: int = 2
    head_dim: int = 8
    d_base: int = 128
    seed: int = 0        # one seed for every grid point: common random numbers across the grid

    def __post_init__(self) -> None:
        def bad(field: str, why: str) -> ConfigError:
            return ConfigError(f"TransferConfig.{field}={getattr(self, field)!r}: {why}")
        if not self.families or any(f not in FAMILIES for f in self.families):
            raise bad("families", f"choose from {', '.join(FAMILIES)}")
        if not self.params or any(p not in ("mup", "sp") for p in self.params):
            raise bad("params", "choose from mup, sp")
        if len(self.lrs) < 3 or any(b <= a for a, b in zip(self.lrs, self.lrs[1:])) or min(self.lrs) <= 0:
            raise bad("lrs", "need at least 3 positive, strictly increasing learning rates")
        if not self.beta1s or any(not 0.0 <= b < 1.0 for b in self.beta1s):
            raise bad("beta1s", "each beta1 must lie in [0, 1)")
        for w in (self.proxy_width, *self.target_widths):
            if w < self.head_dim or w % self.head_dim:
                raise bad("target_widths" if w != self.proxy_width else "proxy_width",
                          f"widths must be positive multiples of head_dim={self.head_dim}, got {w}")
        for f in ("steps", "batch", "context", "depth"):
            if getattr(self, f) < 1:
                raise bad(f, "must be >= 1")

    def model(self, family: str, width: int, param: str) -> ModelConfig:
        return ModelConfig(family=family, width=width, depth=self.depth, context=self.context,
                           head_dim=self.head_dim, d_base=self.d_base, param=param)

    def train(self, lr: float, beta1: float) -> TrainConfig:
        # beta2, weight decay and warmup as the committed study used them (not the trainer's defaults).
        return TrainConfig(lr=lr, beta1=beta1, beta2=0.99, weight_decay=0.1, warmup_frac=0.02,
                           total_steps=self.steps, batch=self.batch, seed=self.seed)


Progress = Callable[[str], None]


def final_train_bits(mc: ModelConfig, tc: TrainConfig, steps: int) -> dict[str, Any]:
    """Trains one grid point; its score is the mean training bits of the last chunk (inf if diverged)."""
    t0 = time.perf_counter()
    state, status, bits = train_state_to(init_state(mc, tc), tc, steps)
    wall = time.perf_counter() - t0
    loss = bits if status == "ok" and math.isfinite(bits) else math.inf
    return {"lr": tc.lr, "beta1": tc.beta1, "loss_bits": loss, "status": status, "wall_s": round(wall, 3)}


def best_index(losses: list[float]) -> int | None:
    """Index of the lowest finite loss (first on ties); None if every run diverged."""
    finite = [(v, i) for i, v in enumerate(losses) if math.isfinite(v)]
    return min(finite)[1] if finite else None


def _sweep(cfg: TransferConfig, mc: ModelConfig, points: list[tuple[float, float]],
           progress: Progress | None) -> tuple[list[dict[str, Any]], float]:
    rows, t0 = [], time.perf_counter()
    for lr, b1 in points:
        rows.append(final_train_bits(mc, cfg.train(lr, b1), cfg.steps))
        if progress is not None:
            r = rows[-1]
            progress(f"{mc.family}/{mc.param} w{mc.width} lr {lr:g} beta1 {b1:g}: {r['loss_bits']:.4f} bits "
                     f"({r['wall_s']:.1f} s)")
    return rows, time.perf_counter() - t0


def run_family(cfg: TransferConfig, family: str, param: str, progress: Progress | None = None, *,
               prereg: Prereg | None = None) -> dict[str, Any]:
    """Proxy 5 x 5 sweep, then the lr axis at each target width at the proxy's best beta1.

    Each target's `within_one_step` records |shift| <= prereg.lr_transfer_max_shift (the field keeps
    its v1 name; `transfer_verdict` recomputes it from `shift`).
    """
    max_shift = (prereg or load_prereg()).lr_transfer_max_shift
    grid = [(lr, b1) for b1 in cfg.beta1s for lr in cfg.lrs]
    rows, wall = _sweep(cfg, cfg.model(family, cfg.proxy_width, param), grid, progress)
    ib = best_index([r["loss_bits"] for r in rows])
    if ib is None:
        raise TransferError(f"{family}/{param}: every proxy run diverged; widen the lr grid downwards")
    best = rows[ib]
    i_lr = cfg.lrs.index(best["lr"])
    out: dict[str, Any] = {
        "proxy": {"width": cfg.proxy_width, "runs": rows, "wall_s": round(wall, 2),
                  "best": {"lr": best["lr"], "beta1": best["beta1"], "lr_index": i_lr,
                           "loss_bits": best["loss_bits"]}},
        "targets": {},
    }
    for w in cfg.target_widths:
        trs, twall = _sweep(cfg, cfg.model(family, w, param), [(lr, best["beta1"]) for lr in cfg.lrs], progress)
        it = best_index([r["loss_bits"] for r in trs])
        shift = None if it is None else it - i_lr
        out["targets"][str(w)] = {
            "runs": trs, "wall_s": round(twall, 2), "beta1": best["beta1"],
            "best_lr": None if it is None else cfg.lrs[it], "lr_index": it, "shift": shift,
            "within_one_step": shift is not None and abs(shift) <= max_shift,
            "at_grid_edge": it in (0, len(cfg.lrs) - 1),
        }
    return out


def cost_summary(cfg: TransferConfig, study_families: Mapping[str, Any]) -> dict[str, Any]:
    """Measured proxy-sweep wall time vs the same 25-point sweep at each target width.

    The full-width 25-point sweep was not run: it is extrapolated from the 5 target runs (same
    shape and steps; lr and beta1 do not change the compute) as the first run's wall time, which
    includes the one compilation, plus 24 times the mean of the other runs, exactly how the proxy
    sweep itself was timed (one compilation, then 25 runs).
    """
    n = len(cfg.lrs) * len(cfg.beta1s)
    out: dict[str, Any] = {"grid_points": n,
                           "method": "EXTRAPOLATED full-width sweep: first target run (with compile) + "
                                     f"{n - 1} x mean of the other target runs; proxy sweep measured whole"}
    for fam, by_param in study_families.items():
        for param, s in by_param.items():
            proxy = s["proxy"]["wall_s"]
            row = {"proxy_sweep_s": proxy}
            for w, t in s["targets"].items():
                walls = [r["wall_s"] for r in t["runs"]]
                full = walls[0] + (n - 1) * float(np.mean(walls[1:] or walls))
                row[f"full_sweep_s_w{w}"] = round(full, 1)
                row[f"ratio_w{w}"] = round(full / proxy, 2)
            out[f"{fam}/{param}"] = row
    return out


def run_study(cfg: TransferConfig, progress: Progress | None = None, *, command: str = "",
              prereg: Prereg | None = None) -> dict[str, Any]:
    """The whole study as a JSON-ready dict (every run's loss, each family's transfer outcome, costs)."""
    t0 = time.perf_counter()
    pr = prereg or load_prereg()
    fams = {f: {p: run_family(cfg, f, p, progress, prereg=pr) for p in cfg.params} for f in cfg.families}
    cfgd = dataclasses.asdict(cfg)
    return {"version": STUDY_VERSION, "command": command, "lr_transfer_max_shift": pr.lr_transfer_max_shift,
            "score": "final training loss: mean training cross-entropy (bits/byte) over the last 32 steps",
            "config": {k: list(v) if isinstance(v, tuple) else v for k, v in cfgd.items()},
            "families": fams, "cost": cost_summary(cfg, fams), "wall_s": round(time.perf_counter() - t0, 1)}


def _finite_or_null(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _finite_or_null(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_finite_or_null(v) for v in x]
    return x


def write_study(study: Mapping[str, Any], path: str | Path | None = None) -> Path:
    """Writes the study as strict JSON (a diverged run's loss becomes null)."""
    p = Path(path) if path is not None else default_study_path()
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(_finite_or_null(dict(study)), indent=1) + "\n", encoding="utf-8")
    return p


def load_study(path: str | Path | None = None) -> dict[str, Any]:
    """Reads a study JSON; raises TransferError naming the file when it is missing or malformed."""
    p = Path(path) if path is not None else default_study_path()
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TransferError(f"{p}: no lr-transfer study; run `python -m experiments.mup_transfer`") from None
    except (OSError, ValueError) as e:
        raise TransferError(f"{p}: cannot read the lr-transfer study: {e}") from None
    if not isinstance(data, dict) or data.get("version") != STUDY_VERSION or "families" not in data:
        raise TransferError(f"{p}: not a version-{STUDY_VERSION} lr-transfer study (keys: {sorted(data)[:6]})")
    return data


def transfer_lr(family: str, target_width: int, *, d_base: int = 128,
                study: Mapping[str, Any] | str | Path | None = None) -> tuple[float, float]:
    """(lr, beta1) for a full-width muP trial: the proxy's best point, unchanged.

    Under muP the base lr is width-independent by construction: train.py applies the per-role
    multipliers (hidden lr / m, m = width / d_base), so the proxy's base lr is the full-width one.
    The study must have been made with the same d_base. The study was run at its own depth and
    head_dim (recorded in its config); muP does not cover transfer across those.
    """
    data = load_study(study) if study is None or isinstance(study, (str, Path)) else study
    cfg = data["config"]
    if family not in data["families"] or "mup" not in data["families"][family]:
        raise TransferError(f"transfer_lr: family {family!r} has no muP proxy sweep in the study "
                            f"(families: {sorted(data['families'])})")
    if d_base != cfg["d_base"]:
        raise TransferError(f"transfer_lr: d_base={d_base} but the study's base lr is for d_base={cfg['d_base']}")
    if not isinstance(target_width, int) or target_width < cfg["proxy_width"]:
        raise TransferError(f"transfer_lr: target_width={target_width!r} must be an integer >= the proxy "
                            f"width {cfg['proxy_width']}")
    best = data["families"][family]["mup"]["proxy"]["best"]
    return float(best["lr"]), float(best["beta1"])


def mup_verdict(coord_check_result: Any, prereg: Prereg | None = None) -> Verdict:
    """V1's falsifier: enabled iff every fitted coord-check |slope| < prereg.mup_slope_max.

    A deterministic bound on fitted slopes, not a statistical test: no p-value, so the per-arm
    level alpha / bonferroni_n of pre-registration v2 does not apply (the slopes are fitted to
    seed-averaged activations, and the same result always gives the same verdict).
    Takes a coord_check.CoordCheckResult (anything with max_abs_slope() and worst(n)).
    """
    threshold = (prereg or load_prereg()).mup_slope_max
    r = coord_check_result
    stat = float(r.max_abs_slope())
    fams = ", ".join(r.config.families)
    where = f"{r.config.param} coord check of {fams} at widths {list(r.config.widths)}"
    if not math.isfinite(stat):
        return Verdict(False, stat, threshold, f"{where}: a slope is not finite (a run diverged or nothing fitted)")
    if stat < threshold:
        return Verdict(True, stat, threshold, f"{where}: every |slope| < {threshold:g}")
    worst = [c for c in r.worst(len(r.cells())) if abs(c[3]) >= threshold]
    names = "; ".join(f"{f}/{layer} t={t} slope {s:+.3f}" for f, layer, t, s in worst[:5])
    return Verdict(False, stat, threshold, f"{where}: {len(worst)} cell(s) with |slope| >= {threshold:g}, "
                                           f"worst: {names}")


def transfer_verdict(study: Mapping[str, Any], param: str = "mup", prereg: Prereg | None = None) -> Verdict:
    """Second falsifier: every target's best lr within prereg.lr_transfer_max_shift grid steps of its proxy's.

    A deterministic bound on the study's measured grid optima, not a statistical test.
    """
    max_shift = (prereg or load_prereg()).lr_transfer_max_shift
    steps = "grid step" if max_shift == 1 else "grid steps"
    shifts = []
    for fam, by_param in study["families"].items():
        for w, t in by_param.get(param, {"targets": {}})["targets"].items():
            shifts.append((math.inf if t["shift"] is None else abs(t["shift"]), fam, w))
    if not shifts:
        return Verdict(False, math.nan, float(max_shift), f"no {param} target widths in the study")
    worst = max(shifts)
    ok = worst[0] <= max_shift
    bad = [f"{f} w{w}: {s:g} steps" for s, f, w in shifts if s > max_shift]
    reason = (f"{param}: every target's best lr within {max_shift} {steps} (lr_transfer_max_shift) of the proxy's"
              if ok else f"{param}: best lr moved more than {max_shift} {steps} (lr_transfer_max_shift): "
                         f"{'; '.join(bad)}")
    return Verdict(ok, float(worst[0]), float(max_shift), reason)
