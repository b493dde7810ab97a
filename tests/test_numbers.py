"""Numbers a user gives (vfio_mig_cts/numbers.py): finite, of their kind, in range, or one line."""

from __future__ import annotations

import pytest

from vfio_mig_cts.numbers import SECONDS, NumberError, count


@pytest.mark.parametrize(("value", "want"), [("5", 5), ("2.5", 2.5), (" 7 ", 7), ("1_000", 1000), (3, 3),
                                             (0.25, 0.25), ("86400", 86400)])
def test_seconds_accepted(value: object, want: float) -> None:
    assert SECONDS.parse("--t", value) == want


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "-inf", "1e400", "86401", "abc", "", True, None,
                                   float("nan"), [1], 0])
def test_seconds_refused_in_one_line(value: object) -> None:
    with pytest.raises(NumberError) as info:
        SECONDS.parse("--t", value)
    text = str(info.value)
    assert "\n" not in text and text.startswith("--t ") and "give a number of seconds above 0 to 86400" in text


@pytest.mark.parametrize(("value", "ok"), [("1", True), ("10", True), ("0", False), ("11", False), ("2.0", False),
                                           (2.0, False), (False, False), ("0x3", False), (4, True)])
def test_counts_are_integers_in_range(value: object, ok: bool) -> None:
    bounds = count(1, 10)
    if ok:
        assert bounds.parse("N", value) == int(str(value))
    else:
        with pytest.raises(NumberError, match=r"N .*: give an integer from 1 to 10"):
            bounds.parse("N", value)


def test_checking_twice_is_harmless() -> None:
    once = SECONDS.parse("--t", "2.5")
    assert SECONDS.parse("--t", once) == once
