"""The one verdict type every accelerator (V1-V7) returns: is it enabled, on what evidence."""
from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any


@dataclasses.dataclass(frozen=True)
class Verdict:
    """An accelerator's falsifier outcome: `enabled` iff `statistic` passed `threshold`; `reason` says why."""
    enabled: bool
    statistic: float
    threshold: float
    reason: str

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise TypeError(f"Verdict.enabled={self.enabled!r}: must be a bool")
        if not self.reason:
            raise ValueError("Verdict.reason: must say why (empty string given)")

    def line(self) -> str:
        """One human-readable line for summaries."""
        state = "enabled" if self.enabled else "DISABLED"
        stat = "nan" if math.isnan(self.statistic) else f"{self.statistic:.4g}"
        return f"{state} (statistic {stat} vs threshold {self.threshold:.4g}): {self.reason}"


# ---------------------------------------------------------------- verdict files (V3, V4, V6, V7 studies)
class VerdictFileError(ValueError):
    """A verdict file is malformed, of another kind, or judged on another table; the message names it."""


def _number(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None   # a nan statistic (nothing measured) is stored as null


def write_verdict_file(path: "str | os.PathLike[str]", kind: str, verdict: Verdict, *, table: str | None,
                       table_sha256: str | None, prereg: Any, **payload: Any) -> Path:
    """Writes a study's verdict atomically: kind, the table (name, sha256) it was judged on, the
    pre-registration version, the study's figures (`payload`, JSON-able, finite) and the verdict
    (a nan statistic or threshold as null)."""
    p = Path(path)
    data = {"kind": kind, "table": table, "table_sha256": table_sha256, "prereg_version": prereg.version,
            **payload, "verdict": {**dataclasses.asdict(verdict), "statistic": _number(verdict.statistic),
                                   "threshold": _number(verdict.threshold)}}
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    os.replace(tmp, p)
    return p


def read_verdict_file(path: "str | os.PathLike[str]", kind: str, prereg: Any, *, missing: str,
                      missing_threshold: float | None = None, table_sha256: str | None = None,
                      label: str | None = None) -> tuple[Verdict, dict[str, Any]]:
    """(verdict, the file's fields). A missing file gives a disabled verdict whose reason is `missing`
    ("not judged yet") and no fields; a malformed file, another kind, or (when table_sha256 is given)
    a verdict judged on another table raises VerdictFileError ("not a <label> file" names it)."""
    p = Path(path)
    if not p.is_file():
        thr = prereg.alpha_per_arm if missing_threshold is None else missing_threshold
        return Verdict(False, math.nan, thr, missing), {}
    num = lambda x: math.nan if x is None else float(x)  # noqa: E731
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
        if data.get("kind") != kind:
            raise ValueError(f"kind {data.get('kind')!r}, expected {kind!r}")
        v = data["verdict"]
        verdict = Verdict(v["enabled"], num(v["statistic"]), num(v["threshold"]), v["reason"])
        sha = data["table_sha256"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise VerdictFileError(f"{p}: not a {label or kind} file ({e})") from None
    if table_sha256 is not None and sha != table_sha256:
        raise VerdictFileError(f"{p}: judged on table sha256 {sha}, not the table in use ({table_sha256}); "
                               "rerun the study")
    return verdict, data


def load_verdict_file(path: "str | os.PathLike[str]", kind: str, prereg: Any, *, missing: str,
                      table_sha256: str | None = None, label: str | None = None) -> Verdict:
    """The verdict alone (see `read_verdict_file`)."""
    return read_verdict_file(path, kind, prereg, missing=missing, table_sha256=table_sha256, label=label)[0]


def wilcoxon_less(x: "list[float]", y: "list[float]") -> float:
    """One-sided Wilcoxon signed-rank p-value that x is lower than y (paired), deterministic.

    Zero differences are dropped (zero_method "wilcox"); all pairs tied gives 1.0. Which null
    distribution: SciPy's exact one when it is exact (at most 50 non-zero differences, no tied
    magnitudes); with tied magnitudes and at most 13 non-zero differences, the exact enumeration of
    all 2^n sign flips of the non-zero differences' midranks (`_signed_rank_exact_less`); otherwise
    the normal approximation with the tie correction. (SciPy's default "auto" falls back to a
    *random* permutation test for small samples with ties: slow, and not exact.)
    """
    from scipy.stats import wilcoxon
    d = [a - b for a, b in zip(x, y)]
    nz = [v for v in d if v != 0]
    if not nz:
        return 1.0
    if len(nz) <= 50 and len({abs(v) for v in nz}) == len(nz):
        method: Any = "exact"
    elif len(nz) <= 13:
        return _signed_rank_exact_less(nz)
    else:
        method = "approx"
    return float(wilcoxon(x, y, alternative="less", zero_method="wilcox", method=method).pvalue)


def _signed_rank_exact_less(nz: "list[float]") -> float:
    """Exact P(R+ <= observed R+) over all 2^n equally likely sign flips of the non-zero differences.

    R+ is the sum of the midranks of |d| over the positive d (ties share their mean rank, as SciPy
    ranks them); midranks are multiples of 1/2, so every sum is exact in float64. Without ties this
    is SciPy's exact null distribution (checked in tests/test_verdict.py).
    """
    import numpy as np
    from scipy.stats import rankdata
    d = np.asarray(nz, dtype=np.float64)
    n = d.size
    ranks = rankdata(np.abs(d))
    observed = float(ranks[d > 0].sum())
    signs = (np.arange(2 ** n, dtype=np.int64)[:, None] >> np.arange(n, dtype=np.int64)) & 1
    null = signs @ ranks
    return float(np.count_nonzero(null <= observed)) / float(2 ** n)
