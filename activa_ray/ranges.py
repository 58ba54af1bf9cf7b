"""The allowed range of every numeric config field, declared beside the field, checked in one place.

Each config dataclass lists its numeric fields in a `RANGES` class attribute; `range_problems`
walks a config tree and returns one `key=value: must be ...` line per value outside its range, so
a bad value is refused before any simulation, Ray start or run directory. Torch- and Ray-free:
every config section (config.py, data/config.py, model/config.py) imports it, and every check raises
its `ConfigError`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any


class ConfigError(ValueError):
    """A config file, override or value that does not fit the config tree."""


@dataclass(frozen=True)
class Range:
    """A closed or open interval of allowed numbers; unbounded ends are ±inf."""

    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False  # True: low itself is not allowed
    high_open: bool = False

    def __contains__(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return False
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def __str__(self) -> str:
        if math.isinf(self.high):
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        if math.isinf(self.low):
            return f"{'<' if self.high_open else '<='} {self.high:g}"
        return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"


AT_LEAST_0 = Range(0)
AT_LEAST_1 = Range(1)
POSITIVE = Range(0, low_open=True)
FRACTION = Range(0, 1)


def range_problems(node: Any, prefix: str) -> list[str]:
    """One line per numeric field of the dataclass tree `node` outside its declared range."""
    problems = []
    ranges = getattr(type(node), "RANGES", {})
    for f in dataclasses.fields(node):
        value = getattr(node, f.name)
        key = f"{prefix}.{f.name}"
        if dataclasses.is_dataclass(value):
            problems += range_problems(value, key)
        elif f.name in ranges and value not in ranges[f.name]:
            finite = "" if _is_finite_number(value) else "a finite number "
            problems.append(f"{key}={value!r}: must be {finite}{ranges[f.name]}")
    return problems


def low_high_problems(node: Any, prefix: str, stems: tuple[str, ...]) -> list[str]:
    """One line per pair `<stem>_low`, `<stem>_high` of `node` with low > high."""
    problems = []
    for stem in stems:
        low, high = getattr(node, f"{stem}_low"), getattr(node, f"{stem}_high")
        if low > high:
            problems.append(f"{prefix}.{stem}_low={low!r}: must be <= {prefix}.{stem}_high={high!r}")
    return problems


def _is_finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
