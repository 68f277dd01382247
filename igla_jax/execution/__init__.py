"""Execution: performs a race's actions and records them. The backend protocol and its driver
(`backends`), the rows both write (`rows`), the live executor, the trainer's runner, the live, Ray and
replay backends, presets, the run directory, `race_runner` (a whole race), estimates and the report.

The top layer: imports `igla_jax.curves`, `igla_jax.search`, `igla_jax.training`, `igla_jax.evidence`.
"""
