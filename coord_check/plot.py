"""Coord-check figure: one panel per step, log-log width vs mean |activation|, one line per layer."""
from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from coord_check.core import CoordCheckResult  # noqa: E402

DPI = 80


def _save_small(fig: plt.Figure, out: Path) -> None:
    """PNG at DPI, quantised to a 64-colour palette: a few tens of kB for the repository."""
    from PIL import Image
    buf = io.BytesIO()
    fig.savefig(buf, dpi=DPI, format="png")
    plt.close(fig)
    buf.seek(0)
    img = Image.open(buf).convert("RGB").quantize(colors=64, method=Image.Quantize.MEDIANCUT)
    img.save(out, format="PNG", optimize=True)


def plot_family(result: CoordCheckResult, family: str, path: str | Path) -> Path:
    """Writes the family's coord-check PNG (small: dpi 80) and returns its path."""
    cfg = result.config
    widths = np.asarray(cfg.widths)
    layers = result.values[family]
    fig, axes = plt.subplots(1, cfg.steps, figsize=(2.3 * cfg.steps, 2.7), sharey=True, squeeze=False)
    for t, ax in enumerate(axes[0]):
        for layer, v in sorted(layers.items()):
            y = v[:, :, t].mean(axis=0)
            slope = result.slopes[family][layer][t]
            if slope is None:       # exactly zero by construction: nothing to draw on a log axis
                continue
            ax.plot(widths, y, marker="o", ms=3, lw=1, label=f"{layer} ({slope:+.2f})")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(widths, [str(w) for w in widths], fontsize=7)
        ax.tick_params(axis="y", labelsize=7)
        ax.set_title(f"t = {t + 1}", fontsize=9)
        ax.set_xlabel("width", fontsize=8)
        ax.legend(fontsize=5, loc="best", frameon=False)
    axes[0][0].set_ylabel("mean |activation|", fontsize=8)
    fig.suptitle(f"{family} coord check ({cfg.param}, lr {cfg.lr:g}, {cfg.seeds} seeds; "
                 f"legend: log-log slope)", fontsize=9)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    _save_small(fig, out)
    return out


def plot_transfer(study: dict, family: str, path: str | Path) -> Path:
    """The muTransfer figure: final training loss vs lr, one curve per width, muP beside sp."""
    params = [p for p in ("mup", "sp") if p in study["families"][family]]
    fig, axes = plt.subplots(1, len(params), figsize=(4.2 * len(params), 3.2), sharey=True, squeeze=False)
    for ax, param in zip(axes[0], params):
        s = study["families"][family][param]
        best = s["proxy"]["best"]
        proxy = [r for r in s["proxy"]["runs"] if r["beta1"] == best["beta1"]]
        curves = [(s["proxy"]["width"], proxy)] + [(int(w), t["runs"]) for w, t in s["targets"].items()]
        for width, runs in curves:
            lr = np.array([r["lr"] for r in runs])
            y = np.array([np.nan if r["loss_bits"] is None else r["loss_bits"] for r in runs], dtype=float)
            line, = ax.plot(lr, y, marker="o", ms=3, lw=1, label=f"width {width}")
            if np.isfinite(y).any():
                i = int(np.nanargmin(y))
                ax.plot(lr[i], y[i], marker="*", ms=11, color=line.get_color())
        ax.set_xscale("log", base=2)
        lrs = sorted({r["lr"] for r in s["proxy"]["runs"]})
        ax.set_xticks(lrs, [f"{v:g}" for v in lrs])
        ax.minorticks_off()
        ax.set_xlabel("base lr", fontsize=8)
        ax.set_title(f"{family} {param} (beta1 {best['beta1']:g})", fontsize=9)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7, frameon=False)
    axes[0][0].set_ylabel("final training loss (bits/byte)", fontsize=8)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    _save_small(fig, out)
    return out
