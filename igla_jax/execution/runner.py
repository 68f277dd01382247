"""What a worker needs to perform one compute action: the preset's shape, the trainer, the XLA cache.

`ActionRunner` trains a Train, Confirm or Reproduce action from its checkpoint with the trainer
(`igla_jax.training.train` unless a test passes another); every backend that trains for real
(`local`, `population`, `ray`) runs actions through it, in this process or on a Ray worker.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Callable

from igla_jax.search.race_types import Confirm, Train
from igla_jax.search.search_space import SearchSpace


@dataclasses.dataclass(frozen=True)
class Shape:
    """The fixed (non-searched) settings of a race preset that the executor needs to train."""
    preset: str
    space: SearchSpace
    context: int
    batch: int


class BackendError(RuntimeError):
    """A backend cannot run (Ray missing, a cluster out of reach, a worker lost for good); says what to do."""


@dataclasses.dataclass(frozen=True)
class ActionRunner:
    """Everything a worker needs to perform a compute action (picklable: Ray ships it to its workers).

    trainer None: igla_jax.training.train, imported where the action runs; compile_cache: the persistent XLA
    cache a fresh worker process should use (None: leave its JAX configuration alone).
    """
    shape: Shape
    out: Path
    trainer: Any = None
    compile_cache: str | None = None

    def _trainer(self) -> Any:
        if self.trainer is not None:
            return self.trainer
        from igla_jax.training import train  # lazy: pulls in jax/optax
        return train

    def ckpt(self, name: str | None) -> Path | None:
        return None if name is None else self.out / "ckpt" / f"{name}.msgpack"

    def model_config(self, config: Any) -> Any:
        """The model a config builds at this race's context and head width."""
        return config.to_model_config(context=self.shape.context, head_dim=self.shape.space.head_dim)

    def configs(self, a: Any) -> tuple[Any, Any]:
        horizon = a.total_steps if isinstance(a, Train) else (a.total_steps or a.to_step)
        return self.model_config(a.config), a.config.to_train_config(seed=a.seed, total_steps=horizon,
                                                                    batch=self.shape.batch)

    def key(self, a: Any) -> tuple:
        """Actions with one key can share a compiled program (dropout and the EMA beta are traced; the V7
        curriculum is a program of its own)."""
        return self.configs(a)[0].shape(), a.to_step, bool(getattr(a.config, "curriculum", False))

    def shape_key(self, config: Any) -> tuple:
        """What a new trial of this config compiles: its model shape, the batch and whether it has a curriculum."""
        return self.model_config(config).shape(), self.shape.batch, bool(getattr(config, "curriculum", False))

    def can_warm(self) -> bool:
        return hasattr(self._trainer(), "warm_programs")

    def warm(self, config: Any) -> float:
        """Compiles a new trial's programs for this config ahead of its Train (seconds spent; 0: already there)."""
        # seed and horizon are traced values, not part of the program: any will do
        return self._trainer().warm_programs(self.model_config(config),
                                             config.to_train_config(seed=0, total_steps=1000, batch=self.shape.batch))

    def pays(self, actions: list) -> bool:
        tr = self._trainer()
        pays = getattr(tr, "population_pays", None)
        return (len(actions) > 1 and pays is not None and hasattr(tr, "run_population")
                and bool(pays(self.key(actions[0])[0], len(actions))))

    def run(self, a: Any, progress: Callable[[int, int, float], None] | None = None) -> Any:
        """Trains one action (only a Confirm, a victory run, is also scored on the test half)."""
        mc, tc = self.configs(a)
        return self._trainer().run_trial(mc, tc, to_step=a.to_step, from_checkpoint=self.ckpt(getattr(a, "from_checkpoint", None)),
                                         save_checkpoint=self.ckpt(getattr(a, "save_checkpoint", None)),
                                         progress=progress, eval_test=isinstance(a, Confirm))

    def run_group(self, actions: list, progress: Callable[[int, int, float], None] | None = None) -> list:
        """Trains actions of one key as one population (one action: run)."""
        if len(actions) == 1:
            return [self.run(actions[0], progress)]
        cfgs = [self.configs(a) for a in actions]
        return self._trainer().run_population(
            [mc for mc, _ in cfgs], [tc for _, tc in cfgs], to_step=actions[0].to_step,
            from_checkpoints=[self.ckpt(getattr(a, "from_checkpoint", None)) for a in actions],
            save_checkpoints=[self.ckpt(getattr(a, "save_checkpoint", None)) for a in actions],
            progress=progress, eval_tests=[isinstance(a, Confirm) for a in actions])


def enable_compile_cache(path: str | os.PathLike | None) -> None:
    """Persistent XLA compilation cache (a warm cache makes repeated CPU races start in seconds)."""
    if not path:
        return
    import jax
    Path(path).mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
