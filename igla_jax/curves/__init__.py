"""Recorded learning curves: the curve table (`table`: format, reader, writer, the recording of a run),
what a table says (`stats`) and its truth from seeds nothing selected on (`truth`).

Imports `igla_jax.search`, `igla_jax.training` and `igla_jax.evidence`; `igla_jax.execution` replays
these tables. The table's public names are re-exported here.
"""
from igla_jax.curves.table import (ROW_KEYS, SEED_ROLES, STRATA, CurveError, CurveTable, PlannedRun,
                                   TableWriter, counts, file_sha256, hardware, ladder_for, manifest_path,
                                   plan, read_manifest, read_table, record_run, shape_key, validate_row,
                                   warm_shape, write_manifest)

__all__ = ["ROW_KEYS", "SEED_ROLES", "STRATA", "CurveError", "CurveTable", "PlannedRun", "TableWriter",
           "counts", "file_sha256", "hardware", "ladder_for", "manifest_path", "plan", "read_manifest",
           "read_table", "record_run", "shape_key", "validate_row", "warm_shape", "write_manifest"]
