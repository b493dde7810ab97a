"""Numbers a user gives (command line, lab file): finite, of the right kind, in range, or one line.

Rules:

- Every number the suite and its tools read from a user is checked where it is read, with the same
  ``Bounds`` for the command line and a lab file: a count is an integer (``True`` is not one), a
  time is a finite number of seconds (``nan``, ``inf`` and ``1e400`` are not), and each has a range.
- A value outside its bounds is a ``NumberError`` whose text is one line naming what to give; the
  entry points turn it into their usage error (exit 4).
- Strings are read as a user writes them (``"5"``, ``"2.5"``, ``"1_000"``); a value already of the
  right type passes through unchanged, so checking twice is harmless.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

DAY = 86400.0


class NumberError(ValueError):
    """A number outside its bounds; ``str()`` is one line saying what to give."""


@dataclass(frozen=True)
class Bounds:
    """What a number must be: an integer or a real, ``low`` (exclusive when ``above``) to ``high``."""

    integer: bool
    low: float
    high: float
    above: bool = False  # low is exclusive ("above 0")
    unit: str = ""

    def describe(self) -> str:
        kind = "an integer" if self.integer else "a number"
        unit = f" of {self.unit}" if self.unit else ""
        low = f"above {_fmt(self.low)}" if self.above else f"from {_fmt(self.low)}"
        return f"{kind}{unit} {low} to {_fmt(self.high)}"

    def parse(self, name: str, value: object) -> int | float:
        """``value`` as an int or float inside the bounds, else ``NumberError`` naming ``name``."""
        number = self._number(value)
        if number is None or not (self.low < number if self.above else self.low <= number) or number > self.high:
            raise NumberError(f"{name} {_show(value)}: give {self.describe()}")
        return number

    def _number(self, value: object) -> int | float | None:
        if isinstance(value, bool):
            return None
        if isinstance(value, int):
            return value
        if isinstance(value, float):
            return None if self.integer or not math.isfinite(value) else value
        if not isinstance(value, str):
            return None
        text = value.strip()
        try:
            return int(text, 10)
        except ValueError:
            pass
        if self.integer:
            return None
        try:
            number = float(text)
        except ValueError:
            return None
        return number if math.isfinite(number) else None


def _fmt(x: float) -> str:
    return str(x) if isinstance(x, int) else str(int(x)) if x.is_integer() else str(x)


def _show(value: object) -> str:
    return repr(value) if isinstance(value, str) else str(value)


SECONDS = Bounds(integer=False, low=0.0, high=DAY, above=True, unit="seconds")


def count(low: int, high: int) -> Bounds:
    """An integer from ``low`` to ``high``."""
    return Bounds(integer=True, low=low, high=high)
