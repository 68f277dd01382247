"""Evidence: the pre-registration, verdicts and verdict files, the ledger and its rows, the leaderboard,
the victory rule, the selection-bias correction and the assertion-registry audit.

The bottom layer with `igla_jax.training`: imports nothing else of igla_jax.
"""
