"""Argument types shared by the sub-commands: numbers with a range, and one clear message when out of it."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def _number(cast: Callable[[str], float], what: str, ok: Callable[[float], bool], rule: str):
    def parse(text: str):
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"must be {rule}, got {value}")
        return value

    parse.__name__ = f"{rule.replace(' ', '_')}_{cast.__name__}"
    return parse


#: a whole number >= 1
positive_int = _number(int, "a whole number", lambda v: v >= 1, "at least 1")
#: a whole number >= 0
nonnegative_int = _number(int, "a whole number", lambda v: v >= 0, "0 or more")
#: a number > 0
positive_float = _number(float, "a number", lambda v: v > 0, "positive")
