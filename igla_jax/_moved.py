"""The module paths from before igla_jax was grouped into layers (issue 22), kept importable.

`import igla_jax.race` gives the module `igla_jax.search.race` itself: the same object, so a
monkeypatch through either name patches both. An old module that was split in parts gives a new
module holding the names of all its parts (a copy: patch the part, not it). The repository's own
code and tests import the new paths; these are for code outside it.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from types import ModuleType

MOVED: dict[str, tuple[str, ...]] = {
    "igla_jax.prereg": ("igla_jax.evidence.prereg",),
    "igla_jax.verdict": ("igla_jax.evidence.verdict",),
    "igla_jax.ledger": ("igla_jax.evidence.ledger", "igla_jax.evidence.ledger_row"),
    "igla_jax.leaderboard": ("igla_jax.evidence.leaderboard",),
    "igla_jax.victory": ("igla_jax.evidence.victory",),
    "igla_jax.selection_bias": ("igla_jax.evidence.selection_bias",),
    "igla_jax.audit": ("igla_jax.evidence.audit", "igla_jax.evidence.coq", "igla_jax.evidence.registry"),
    "igla_jax.data": ("igla_jax.training.data",),
    "igla_jax.models": ("igla_jax.training.models",),
    "igla_jax.models.attn": ("igla_jax.training.models.attn",),
    "igla_jax.models.config": ("igla_jax.training.models.config",),
    "igla_jax.models.hybrid": ("igla_jax.training.models.hybrid",),
    "igla_jax.models.jepa": ("igla_jax.training.models.jepa",),
    "igla_jax.models.layers": ("igla_jax.training.models.layers",),
    "igla_jax.models.lowp": ("igla_jax.training.models.lowp",),
    "igla_jax.models.mup": ("igla_jax.training.models.mup",),
    "igla_jax.train": ("igla_jax.training.train", "igla_jax.training.step"),
    "igla_jax.checkpoint": ("igla_jax.training.checkpoint",),
    "igla_jax.bench": ("igla_jax.training.bench",),
    "igla_jax.sgemm": ("igla_jax.training.sgemm",),
    "igla_jax.progress": ("igla_jax.training.progress",),
    "igla_jax.search_space": ("igla_jax.search.search_space",),
    "igla_jax.interfaces": ("igla_jax.search.interfaces",),
    "igla_jax.race_types": ("igla_jax.search.race_types",),
    "igla_jax.race": ("igla_jax.search.race",),
    "igla_jax.anytime": ("igla_jax.search.anytime",),
    "igla_jax.curve_stats": ("igla_jax.curves.stats",),
    "igla_jax.truth": ("igla_jax.curves.truth",),
    "igla_jax.backends": ("igla_jax.execution.backends",),
    "igla_jax.backends_live": ("igla_jax.execution.backends_live", "igla_jax.execution.runner"),
    "igla_jax.backends_ray": ("igla_jax.execution.backends_ray",),
    "igla_jax.executor": ("igla_jax.execution.executor", "igla_jax.execution.rows", "igla_jax.execution.runner"),
    "igla_jax.replay": ("igla_jax.execution.replay",),
    "igla_jax.race_runner": ("igla_jax.execution.race_runner", "igla_jax.execution.presets",
                             "igla_jax.execution.run_dir", "igla_jax.execution.runner"),
    "igla_jax.estimate": ("igla_jax.execution.estimate",),
    "igla_jax.race_report": ("igla_jax.execution.race_report",),
}


class _OldPaths(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds the old paths (ahead of the file system: an old name must never load a second copy)."""

    def find_spec(self, fullname: str, path: object = None,
                  target: object = None) -> importlib.machinery.ModuleSpec | None:
        return importlib.util.spec_from_loader(fullname, self) if fullname in MOVED else None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        parts = [importlib.import_module(name) for name in MOVED[module.__name__]]
        if len(parts) == 1:
            sys.modules[module.__name__] = parts[0]   # the import system returns what sys.modules holds
            return
        for part in reversed(parts):                  # the first part's names win
            module.__dict__.update({k: v for k, v in vars(part).items() if not k.startswith("__")})
        module.__doc__ = f"The old path of {', '.join(MOVED[module.__name__])} (issue 22)."


def install() -> None:
    """Puts the finder first on sys.meta_path (once)."""
    if not any(isinstance(f, _OldPaths) for f in sys.meta_path):
        sys.meta_path.insert(0, _OldPaths())
