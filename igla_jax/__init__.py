"""IGLA needle-search core: data, muP models, training, search space, race, ledger, victory, leaderboard."""
from igla_jax.data import VOCAB, evaluate_bpb, get_batch, load_bytes, splits
from igla_jax.models import FAMILIES, ConfigError, ModelConfig
from igla_jax.train import TrainConfig, TrialResult, run_population, run_trial

__all__ = ["VOCAB", "evaluate_bpb", "get_batch", "load_bytes", "splits", "FAMILIES", "ConfigError",
           "ModelConfig", "TrainConfig", "TrialResult", "run_population", "run_trial"]
