"""Shared behaviour of the params dataclasses that mirror config sections."""
from __future__ import annotations

import dataclasses

import numpy as np


class FromDict:
    """Mixin for a params dataclass: build it from a config dict, rejecting unknown keys (a typo
    must fail loudly rather than fall back to a default)."""

    config_section = "params"  # named in error messages

    @classmethod
    def from_dict(cls, d: dict | None = None):
        d = dict(d or {})
        known = sorted(f.name for f in dataclasses.fields(cls))
        for key in d:
            if key not in known:
                raise ValueError(f"{cls.config_section}: unknown parameter {key!r}; expected one of {known}")
        return cls(**d)

    def with_overrides(self, **overrides):
        """A copy with the fields given as keywords replaced (None: keep), validated again: a
        prediction's keyword overrides of its prediction-parameters object."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return type(self).from_dict({**fields, **{k: v for k, v in overrides.items() if v is not None}})


def check_positive_int(value, name: str) -> int:
    """``value`` if it is a positive integer (not a bool), else a ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    return int(value)
