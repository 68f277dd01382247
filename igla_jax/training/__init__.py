"""Training: TinyShakespeare (hash-checked, corpus/tinyshakespeare.txt), the muP model families, the
train step and the loops (one trial, a vmapped population), checkpoints, throughput benches.

The bottom layer with `igla_jax.evidence`: imports nothing else of igla_jax.
"""
