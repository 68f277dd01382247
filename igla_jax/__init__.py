"""IGLA needle-search core, in layers; each imports only the layers below it.

    execution runs a race: backends (live, Ray, replay), the executor     imports curves, search, training, evidence
    curves    recorded learning-curve tables, what they say, their truth  imports search, training, evidence
    search    the search space, the race state machine and its roles      imports training, evidence
    training  data, muP models, the train step and loops, checkpoints     imports nothing else of igla_jax
    evidence  pre-registration, verdicts, ledger, leaderboard, victory    imports nothing else of igla_jax

igla_jax imports neither accelerators nor experiments (tests/test_architecture.py). The modules'
paths from before the layers (igla_jax.race, igla_jax.train, ...) still import: igla_jax._moved.
"""
from igla_jax import _moved
from igla_jax.training.data import VOCAB, evaluate_bpb, get_batch, load_bytes, splits
from igla_jax.training.models import FAMILIES, ConfigError, ModelConfig
from igla_jax.training.step import TrainConfig
from igla_jax.training.train import TrialResult, run_population, run_trial

_moved.install()

__all__ = ["VOCAB", "evaluate_bpb", "get_batch", "load_bytes", "splits", "FAMILIES", "ConfigError",
           "ModelConfig", "TrainConfig", "TrialResult", "run_population", "run_trial"]
