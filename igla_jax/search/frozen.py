"""`evolve`: `dataclasses.replace` for the race's frozen values, without the generated `__init__` call.

The race builds a new `RaceState` (and `Trial`, `Counters`) for every change of every event;
`dataclasses.replace` passes every field through `__init__` again, which for these plain records
only stores them. `evolve` copies the instance's fields and sets the changed ones: the same value
(equal, same types, same field order), an order of magnitude cheaper. It refuses a class whose
`__init__` does more than store its fields (a `__post_init__`, an `init=False` field, a cached
property kept in the instance): those go through `dataclasses.replace`, which re-validates.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, TypeVar

T = TypeVar("T")

_FIELDS: dict[type, frozenset[str]] = {}   # class -> its field names, once it has passed the check


def _plain_fields(cls: type) -> frozenset[str]:
    names = _FIELDS.get(cls)
    if names is not None:
        return names
    if not dataclasses.is_dataclass(cls) or not cls.__dataclass_params__.frozen:  # type: ignore[attr-defined]
        raise TypeError(f"evolve: {cls.__name__} is not a frozen dataclass")
    fields = dataclasses.fields(cls)
    cached = [k for c in cls.__mro__ for k, v in vars(c).items() if isinstance(v, functools.cached_property)]
    if hasattr(cls, "__post_init__") or any(not f.init for f in fields) or cached or hasattr(cls, "__slots__"):
        raise TypeError(f"evolve: {cls.__name__}'s __init__ does more than store its fields; "
                        "use dataclasses.replace")
    names = frozenset(f.name for f in fields)
    _FIELDS[cls] = names
    return names


def evolve(obj: T, /, **changes: Any) -> T:
    """`dataclasses.replace(obj, **changes)` for a frozen dataclass whose __init__ only stores its fields."""
    names = _plain_fields(type(obj))
    if not names.issuperset(changes):
        bad = sorted(set(changes) - names)[0]
        raise TypeError(f"evolve: {type(obj).__name__} has no field {bad!r}")
    new = object.__new__(type(obj))
    d = new.__dict__
    d.update(obj.__dict__)
    d.update(changes)
    return new
