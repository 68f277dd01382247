"""A rich progress bar for long training runs (writes to stderr, quiet when not a terminal)."""
from __future__ import annotations

import sys

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class StepProgress:
    """Context manager whose `update(step, total, train_bits)` matches train.ProgressFn."""

    def __init__(self, label: str, total: int) -> None:
        self._console = Console(file=sys.stderr)
        self._progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("train {task.fields[bits]} bits"), TimeElapsedColumn(),
                                  TimeRemainingColumn(), console=self._console, transient=False,
                                  disable=not self._console.is_terminal)
        self._task = self._progress.add_task(label, total=total, bits="-")
        self._last_logged = 0
        self._total = total

    def __enter__(self) -> "StepProgress":
        self._progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._progress.__exit__(*exc)

    def update(self, step: int, total: int, bits: float) -> None:
        self._progress.update(self._task, completed=step, total=total, bits=f"{bits:.3f}")
        if not self._console.is_terminal and step - self._last_logged >= max(total // 10, 1):
            self._last_logged = step
            print(f"step {step}/{total}  train {bits:.3f} bits", file=sys.stderr, flush=True)
