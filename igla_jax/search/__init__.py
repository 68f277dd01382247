"""Search: the search space, the race's frozen types, the roles it plugs in (sampler, filter, pruner,
allocator), the ASHA race as a pure state machine and the anytime race's arithmetic.

Imports `igla_jax.training` and `igla_jax.evidence` only.
"""
