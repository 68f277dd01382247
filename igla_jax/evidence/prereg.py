"""The pre-registration: every pre-registered constant, read from assertions/preregistration.json.

No literal copy of these constants lives anywhere else in the code: read them through
`load_prereg()`. The default file is `<repo>/assertions/preregistration.json`, where `<repo>` is
the parent of the `igla_jax` package; the environment variable IGLA_PREREG overrides it.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

PREREG_ENV = "IGLA_PREREG"
META_FIELDS = ("units", "notes", "version", "date", "amendments")


class PreregError(ValueError):
    """The pre-registration file is missing or malformed; the message names the file and field."""


def repo_root() -> Path:
    """The repository root: the parent directory of the igla_jax package (two levels above this file)."""
    return Path(__file__).resolve().parents[2]


def default_prereg_path() -> Path:
    """IGLA_PREREG if set, else <repo>/assertions/preregistration.json."""
    env = os.environ.get(PREREG_ENV)
    return Path(env) if env else repo_root() / "assertions" / "preregistration.json"


def rung_schedule(r0: int, eta: int, n: int) -> tuple[int, ...]:
    """Geometric ASHA rungs (r0, r0*eta, ..., r0*eta^(n-1))."""
    for name, v, lo in (("r0", r0, 1), ("eta", eta, 2), ("n", n, 1)):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ValueError(f"rung_schedule: {name} must be an integer >= {lo}, got {v!r}")
    return tuple(r0 * eta**k for k in range(n))


@dataclass(frozen=True)
class Prereg:
    """Every pre-registered constant (see the file's "notes" for why each has its value)."""
    rungs: tuple[int, ...]
    eta: int
    target_bpb: float
    mu0: float
    effect_size: float
    alpha: float
    seeds: tuple[int, ...]
    bonferroni_n: int
    min_victory_step: int
    bpb_band: tuple[float, float]
    proxy_drop_fraction: float
    surrogate_prune_fraction: float
    holdout_fraction: float
    mup_slope_max: float
    proxy_rho_min: float
    phi_top_fraction: float
    reproduce_tol: float
    null_sim_draws: int
    surrogate_mae_max: float
    curriculum_var_increase_max: float
    phi_explore_share: float
    phi_judge_fraction: float
    lr_transfer_max_shift: int
    filter_score_pool: int
    bootstrap_level: float
    harness_regret_tol: float
    harness_first_promotion_ratio_max: float
    cheap_promotion_fail_max: float
    cheap_promotion_top_fraction: float
    phi_useless_disabled_min: float
    phi_good_disabled_max: float
    ucb_window_trials: int
    ucb_memory_windows: int
    ucb_c: float
    ucb_regret_windows: int
    bohb_top_fraction: float
    bohb_candidates: int
    bohb_bandwidth_factor: float
    bohb_min_bandwidth: float
    bohb_random_fraction: float
    bohb_regret_at: float
    surrogate_top_pruned_max: float
    surrogate_min_predictions: int
    curriculum_candidate_factor: int
    curriculum_quantile: float
    curriculum_configs: int
    curriculum_seeds: int
    confirm_reserve_margin: float
    harness_regret_cap: float
    bohb_regret_at_budget: float
    version: int = 1
    date: str = ""
    amendments: tuple[Mapping[str, Any], ...] = field(default=(), compare=False, hash=False, repr=False)
    source: str = field(default="", compare=False)
    notes: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False, repr=False)
    units: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False, repr=False)

    @property
    def alpha_per_arm(self) -> float:
        """Bonferroni-corrected level for one accelerator arm: alpha / bonferroni_n."""
        return self.alpha / self.bonferroni_n


CONSTANT_FIELDS = tuple(f.name for f in dataclasses.fields(Prereg) if f.name not in ("source",) + META_FIELDS)
DATE_RE = r"^\d{4}-\d{2}-\d{2}$"
# A physical constant, not a threshold: log2(256) bits per byte, what uniform logits score. A diverged
# run, or a replay with no incumbent yet, counts as this (it knows nothing) where a BPB is needed.
UNIFORM_BPB = 8.0


class _Bad(Exception):
    """Internal: a field value is wrong; carries the field name and what is wrong."""

    def __init__(self, name: str, what: str):
        super().__init__(name, what)
        self.name, self.what = name, what


def _int(name: str, v: Any, lo: int = 1) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise _Bad(name, f"must be an integer, got {type(v).__name__} {v!r}")
    if v < lo:
        raise _Bad(name, f"must be >= {lo}, got {v}")
    return v


def _float(name: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise _Bad(name, f"must be a number, got {type(v).__name__} {v!r}")
    if not math.isfinite(v):
        raise _Bad(name, f"must be finite, got {v!r}")
    return float(v)


def _positive(name: str, v: Any) -> float:
    x = _float(name, v)
    if x <= 0:
        raise _Bad(name, f"must be > 0, got {x}")
    return x


def _at_least_one(name: str, v: Any) -> float:
    x = _positive(name, v)
    if x < 1.0:
        raise _Bad(name, f"must be >= 1 (a margin on a measured cost), got {x!r}")
    return x


def _fraction(name: str, v: Any) -> float:
    x = _float(name, v)
    if not 0.0 < x < 1.0:
        raise _Bad(name, f"must be a fraction in (0, 1), got {x}")
    return x


def _int_list(name: str, v: Any, lo: int) -> tuple[int, ...]:
    if not isinstance(v, list) or not v:
        raise _Bad(name, f"must be a non-empty list of integers, got {v!r}")
    return tuple(_int(f"{name}[{i}]", x, lo) for i, x in enumerate(v))


def _rungs(name: str, v: Any) -> tuple[int, ...]:
    return _int_list(name, v, 1)


def _seeds(name: str, v: Any) -> tuple[int, ...]:
    seeds = _int_list(name, v, 0)
    if len(set(seeds)) != len(seeds):
        raise _Bad(name, f"must be distinct, got {list(seeds)}")
    if len(seeds) < 2:
        raise _Bad(name, f"needs at least 2 seeds for a t-test, got {list(seeds)}")
    return seeds


def _band(name: str, v: Any) -> tuple[float, float]:
    if not isinstance(v, list) or len(v) != 2:
        raise _Bad(name, f"must be a list [low, high] of two numbers, got {v!r}")
    lo, hi = _positive(f"{name}[0]", v[0]), _positive(f"{name}[1]", v[1])
    if lo >= hi:
        raise _Bad(name, f"low must be < high, got [{lo}, {hi}]")
    return lo, hi


_PARSERS: dict[str, Callable[[str, Any], Any]] = {
    "rungs": _rungs,
    "eta": lambda n, v: _int(n, v, 2),
    "target_bpb": _positive,
    "mu0": _positive,
    "effect_size": _positive,
    "alpha": _fraction,
    "seeds": _seeds,
    "bonferroni_n": lambda n, v: _int(n, v, 1),
    "min_victory_step": lambda n, v: _int(n, v, 1),
    "bpb_band": _band,
    "proxy_drop_fraction": _fraction,
    "surrogate_prune_fraction": _fraction,
    "holdout_fraction": _fraction,
    "mup_slope_max": _positive,
    "proxy_rho_min": _fraction,
    "phi_top_fraction": _fraction,
    "reproduce_tol": _positive,
    "null_sim_draws": lambda n, v: _int(n, v, 10_000),  # issue 4: "at least 10,000 draws"
    "surrogate_mae_max": _positive,
    "curriculum_var_increase_max": _positive,
    "phi_explore_share": _fraction,
    "phi_judge_fraction": _fraction,
    "lr_transfer_max_shift": lambda n, v: _int(n, v, 0),
    "filter_score_pool": lambda n, v: _int(n, v, 1),
    "bootstrap_level": _fraction,
    "harness_regret_tol": _positive,
    "harness_first_promotion_ratio_max": _fraction,
    "cheap_promotion_fail_max": _fraction,
    "cheap_promotion_top_fraction": _fraction,
    "phi_useless_disabled_min": _fraction,
    "phi_good_disabled_max": _fraction,
    "ucb_window_trials": lambda n, v: _int(n, v, 1),
    "ucb_memory_windows": lambda n, v: _int(n, v, 1),
    "ucb_c": _positive,
    "ucb_regret_windows": lambda n, v: _int(n, v, 1),
    "bohb_top_fraction": _fraction,
    "bohb_candidates": lambda n, v: _int(n, v, 1),
    "bohb_bandwidth_factor": _positive,
    "bohb_min_bandwidth": _positive,
    "bohb_random_fraction": _fraction,
    "bohb_regret_at": _positive,
    "surrogate_top_pruned_max": _fraction,
    "surrogate_min_predictions": lambda n, v: _int(n, v, 1),
    "curriculum_candidate_factor": lambda n, v: _int(n, v, 2),
    "curriculum_quantile": _fraction,
    "curriculum_configs": lambda n, v: _int(n, v, 1),
    "curriculum_seeds": lambda n, v: _int(n, v, 2),
    "confirm_reserve_margin": lambda n, v: _at_least_one(n, v),
    "harness_regret_cap": _positive,
    "bohb_regret_at_budget": _fraction,
}
assert set(_PARSERS) == set(CONSTANT_FIELDS), "every Prereg constant needs a parser"


def _string_map(name: str, v: Any, allowed: tuple[str, ...] | None) -> dict[str, str]:
    if not isinstance(v, dict) or not all(isinstance(k, str) and isinstance(s, str) and s for k, s in v.items()):
        raise _Bad(name, "must be an object mapping names to non-empty strings")
    if allowed is not None:
        unknown = sorted(set(v) - set(allowed))
        if unknown:
            raise _Bad(f"{name}.{unknown[0]}", "is a note for an unknown field")
    return dict(v)


def _cross_checks(c: dict[str, Any]) -> None:
    """Relations between fields: geometric rungs, target and mu0 inside the band, and so on."""
    rungs, eta = c["rungs"], c["eta"]
    if rungs != rung_schedule(rungs[0], eta, len(rungs)):
        raise _Bad("rungs", f"must be r0 * eta^k strictly increasing with eta={eta}, "
                            f"expected {list(rung_schedule(rungs[0], eta, len(rungs)))}, got {list(rungs)}")
    lo, hi = c["bpb_band"]
    for name in ("target_bpb", "mu0"):
        if not lo < c[name] < hi:
            raise _Bad(name, f"must lie inside bpb_band ({lo}, {hi}), got {c[name]}")
    if c["mu0"] - c["effect_size"] <= lo:
        raise _Bad("effect_size", f"mu0 - effect_size = {c['mu0'] - c['effect_size']} must stay above "
                                  f"bpb_band low {lo}")


def _versioning(data: dict[str, Any]) -> tuple[int, str, tuple[dict[str, Any], ...]]:
    """version (an integer >= 1), date (YYYY-MM-DD) and one amendment per version, in order, the last = version."""
    import re
    version = _int("version", data["version"], 1)
    date = data["date"]
    if not isinstance(date, str) or not re.match(DATE_RE, date):
        raise _Bad("date", f"must be a date YYYY-MM-DD, got {date!r}")
    am = data["amendments"]
    if not isinstance(am, list) or len(am) != version:
        raise _Bad("amendments", f"must be a list with one entry per version (1..{version}), got "
                                 f"{len(am) if isinstance(am, list) else type(am).__name__}")
    for i, a in enumerate(am):
        where = f"amendments[{i}]"
        if not isinstance(a, dict) or set(a) != {"version", "date", "what", "why"}:
            raise _Bad(where, "must be an object with exactly version, date, what, why")
        if a["version"] != i + 1:
            raise _Bad(f"{where}.version", f"must be {i + 1} (amendments in version order), got {a['version']!r}")
        if not isinstance(a["date"], str) or not re.match(DATE_RE, a["date"]):
            raise _Bad(f"{where}.date", f"must be a date YYYY-MM-DD, got {a['date']!r}")
        for k in ("what", "why"):
            if not isinstance(a[k], str) or not a[k].strip():
                raise _Bad(f"{where}.{k}", "must say what changed and why (non-empty string)")
    if am[-1]["date"] != date:
        raise _Bad("date", f"must be the date of the last amendment ({am[-1]['date']}), got {date!r}")
    return version, date, tuple(dict(a) for a in am)


def parse_prereg(data: Any, source: str = "<memory>") -> Prereg:
    """Validates a decoded pre-registration object; raises PreregError naming source and field."""
    try:
        if not isinstance(data, dict):
            raise _Bad("<top level>", f"must be a JSON object, got {type(data).__name__}")
        unknown = sorted(set(data) - set(CONSTANT_FIELDS) - set(META_FIELDS))
        if unknown:
            raise _Bad(unknown[0], "is not a known pre-registered field "
                                   f"(known: {', '.join(CONSTANT_FIELDS + META_FIELDS)})")
        for name in CONSTANT_FIELDS + META_FIELDS:
            if name not in data:
                raise _Bad(name, "is missing")
        c = {name: _PARSERS[name](name, data[name]) for name in CONSTANT_FIELDS}
        notes = _string_map("notes", data["notes"], CONSTANT_FIELDS)
        missing_notes = [n for n in CONSTANT_FIELDS if n not in notes]
        if missing_notes:
            raise _Bad(f"notes.{missing_notes[0]}", "is missing: every constant needs a why/source note")
        units = _string_map("units", data["units"], None)
        version, date, amendments = _versioning(data)
        if "bpb" not in units:
            raise _Bad("units.bpb", "is missing: state the BPB unit (bits per byte)")
        _cross_checks(c)
    except _Bad as e:
        raise PreregError(f"{source}: field '{e.name}' {e.what}") from None
    return Prereg(**c, version=version, date=date, amendments=amendments, source=source, notes=notes, units=units)


def load_prereg(path: str | os.PathLike[str] | None = None) -> Prereg:
    """Reads and validates the pre-registration (default: IGLA_PREREG or the repo's file)."""
    p = Path(path) if path is not None else default_prereg_path()
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PreregError(f"{p}: pre-registration file not found (set {PREREG_ENV} or pass a path)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise PreregError(f"{p}: cannot read pre-registration file: {e}") from None
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except ValueError as e:  # JSONDecodeError and NaN/Infinity constants
        raise PreregError(f"{p}: not valid JSON: {e}") from None
    return parse_prereg(data, str(p))


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")
