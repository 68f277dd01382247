"""muP coordinate check: mean |activation| of every layer against width (see coord_check.core)."""
from coord_check.core import (DEFAULT_WIDTHS, CoordCheckConfig, CoordCheckResult, fit_result, fit_slope,
                              record, run_coord_check)

__all__ = ["DEFAULT_WIDTHS", "CoordCheckConfig", "CoordCheckResult", "fit_result", "fit_slope", "record",
           "run_coord_check"]
