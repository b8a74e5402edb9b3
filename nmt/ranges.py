"""The range of every number a config field or a command-line option takes, declared once beside it.

A config field carries its range as dataclass metadata (`field(default=6, metadata=within(1, 128))`): its
`validate()` checks every such field for Python callers, and `nmt train`'s option of the same name shows and checks
the same range when the command line is parsed. Options no config holds (threads, ports, batch sizes) declare theirs in
nmt/cli/options.py. The bounds are what the code can honour: a seed numpy and torch both take, a thread count a
machine can run, a layer count a model can be built with; infinity and NaN are never a number here.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

from nmt.errors import ConfigError


@dataclass(frozen=True)
class Range:
    low: float
    high: float
    low_open: bool = False  # the low end itself is outside (a learning rate above 0)
    high_open: bool = False  # the high end itself is outside (dropout below 1)

    def holds(self, value) -> bool:
        """Whether VALUE is a finite number inside the range (comparisons with NaN are False, so NaN is outside)."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if isinstance(value, float) and not math.isfinite(value):
            return False
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def describe(self) -> str:
        """`between 1 and 1024`, `more than 0 and at most 10`, `at least 0 and less than 1`."""
        if not (self.low_open or self.high_open):
            return f"between {_number(self.low)} and {_number(self.high)}"
        low = f"more than {_number(self.low)}" if self.low_open else f"at least {_number(self.low)}"
        high = f"less than {_number(self.high)}" if self.high_open else f"at most {_number(self.high)}"
        return f"{low} and {high}"

    def short(self) -> str:
        """For help texts: `1 to 1024`, `0 to 1, 1 excluded`."""
        excluded = [_number(end) for end, open_ in ((self.low, self.low_open), (self.high, self.high_open)) if open_]
        return f"{_number(self.low)} to {_number(self.high)}" + (f", {' and '.join(excluded)} excluded"
                                                                if excluded else "")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e16 else f"{value:g}"


def within(low: float, high: float, *, low_open: bool = False, high_open: bool = False) -> dict:
    """Dataclass field metadata declaring the field's range."""
    return {"range": Range(low, high, low_open, high_open)}


SEED = within(0, 2**32 - 1)  # numpy's generators take 0 <= seed < 2^32, torch's too
THREADS = Range(1, 1024)


def field_range(config_type, name: str) -> Range:
    """The range declared on a config field."""
    for field in dataclasses.fields(config_type):
        if field.name == name:
            return field.metadata["range"]
    raise KeyError(f"{config_type.__name__} has no field {name}")


def flag_name(field: str) -> str:
    return f"--{field.replace('_', '-')}"


def check_ranges(config, label: Callable[[str], str] = flag_name) -> None:
    """Raise ConfigError naming the first field of CONFIG (by `label(field name)`) outside its declared range."""
    for field in dataclasses.fields(config):
        limits = field.metadata.get("range")
        value = getattr(config, field.name)
        if limits is not None and value is not None and not limits.holds(value):
            raise ConfigError(f"{label(field.name)} must be {limits.describe()}, got {value!r}")
