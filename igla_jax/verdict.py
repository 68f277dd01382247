"""The one verdict type every accelerator (V1-V7) returns: is it enabled, on what evidence."""
from __future__ import annotations

import dataclasses
import math


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
