"""The experiments: entry points (`python -m experiments.X`, each parsing arguments and calling a library)
at this level, over three packages: `harness` (every search method replayed and judged on one curve
table, the peers' adapters), `witness` (every failure mode fed to its judge) and `studies` (the
pre-registered studies and power analyses). A study's command keeps its old path through a shim here
(`experiments/v3_study.py` runs `experiments.studies.v3_study`).
"""
