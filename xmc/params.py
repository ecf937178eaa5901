"""Shared behaviour of the params dataclasses that mirror config sections."""
from __future__ import annotations

import dataclasses


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
