"""The studies: each decides one pre-registered question (an accelerator's verdict, a falsifier's power,
the selection-bias correction) on recorded tables or fresh runs, and writes its result under assertions/.

Their command lines keep their old paths (`python -m experiments.v3_study` runs `studies.v3_study`).
Imports igla_jax, accelerators, coord_check and experiments.harness; never the entry points above it.
"""
