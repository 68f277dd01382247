"""Shared fixtures: tiny configurations so the whole suite runs in minutes on 2 cores."""
from __future__ import annotations

import pytest

from igla_jax.training.models import ModelConfig
from igla_jax.training.step import TrainConfig


def tiny_model(family: str = "attn", **kw) -> ModelConfig:
    base = dict(family=family, width=16, depth=2, context=16, head_dim=8)
    base.update(kw)
    return ModelConfig(**base)


def tiny_train(**kw) -> TrainConfig:
    base = dict(lr=1e-2, total_steps=64, batch=4, seed=42, warmup_frac=0.1)
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(params=["attn", "jepa", "hybrid"])
def family(request) -> str:
    return request.param
