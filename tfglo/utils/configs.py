"""Config dataclasses to JSON-able dicts and back (run directories, exports).

Library code takes plain frozen dataclasses; only the apps read flags and build them. Every
config turns into a JSON-able dict with `to_dict` and back with `from_dict`, so a run directory can
store the resolved configuration and an export can rebuild the exact model.
"""

import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")


def to_dict(config: Any) -> dict[str, Any]:
    """Returns a JSON-able dict of a (nested) config dataclass."""
    return dataclasses.asdict(config)


def from_dict(cls: type[T], values: dict[str, Any]) -> T:
    """Builds a (nested) config dataclass from a dict, rejecting unknown keys.

    Args:
      cls: the dataclass type.
      values: as written by `to_dict`; missing keys take their defaults.

    Raises:
      ValueError: a key is not a field of `cls`.
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys: {', '.join(unknown)}")
    kwargs = {}
    for name, value in values.items():
        field_type = fields[name].type
        if dataclasses.is_dataclass(field_type) and isinstance(value, dict):
            value = from_dict(field_type, value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[name] = value
    return cls(**kwargs)
