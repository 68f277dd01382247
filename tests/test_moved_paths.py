"""The module paths from before the layers (issue 22) still import, as the modules they moved to."""
from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from igla_jax._moved import MOVED

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("old", sorted(MOVED))
def test_old_path_imports_the_new_module(old):
    new = [importlib.import_module(n) for n in MOVED[old]]
    mod = importlib.import_module(old)
    assert not (REPO / (old.replace(".", "/") + ".py")).exists(), f"{old}: a file still sits at the old path"
    if len(new) == 1:
        assert mod is new[0]                              # the same object: a monkeypatch reaches both
    else:                                                 # a split module: every part's public names
        for part in new:
            public = [k for k in vars(part) if not k.startswith("_")]
            assert all(getattr(mod, k) is getattr(part, k) for k in public if k in vars(mod)), old
        first = {k for k in vars(new[0]) if not k.startswith("__")}
        assert all(getattr(mod, k) is getattr(new[0], k) for k in first), f"{old}: its first part's names must win"


def test_falsify_an_old_path_that_never_existed_does_not_import():
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("igla_jax.no_such_module")


def test_old_names_the_registry_and_outside_code_use():
    from igla_jax.race import promotable
    from igla_jax.search.race import promotable as new
    from igla_jax.models.jepa import ema_update
    from igla_jax.training.models.jepa import ema_update as new_ema
    from igla_jax.race_runner import PRESETS, enable_compile_cache, prepare_out, run_race
    from igla_jax.executor import Executor, RowMaker, Shape
    from igla_jax.train import TrainConfig, run_population, run_trial
    assert promotable is new and ema_update is new_ema
    assert all(callable(x) for x in (enable_compile_cache, prepare_out, run_race, Executor, RowMaker, Shape,
                                     TrainConfig, run_population, run_trial)) and "quick" in PRESETS


def test_an_old_path_alone_in_a_fresh_process():
    """`import igla_jax.race` first thing (igla_jax imported on the way) gives igla_jax.search.race."""
    code = "import igla_jax.race as r, igla_jax.search.race as n, sys; sys.exit(0 if r is n else 1)"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO, timeout=300).returncode == 0
