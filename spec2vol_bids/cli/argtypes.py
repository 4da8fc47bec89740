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


#: multiples of a byte for :func:`memory_gb`: K, M, G, T (SI, as fMRIPrep) and Ki, Mi, Gi, Ti (binary)
_MEMORY_UNITS = {"": 1e6, "B": 1.0, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
                 "KI": 2.0**10, "MI": 2.0**20, "GI": 2.0**30, "TI": 2.0**40}


def memory_gb(text: str) -> float:
    """``--mem`` as fMRIPrep reads it: a bare number is megabytes; a unit may follow (``16GB``, ``500MB``,
    ``16G``, ``1.5T``, ``8GiB``; case-insensitive). Returns gigabytes (10^9 bytes), as nipype's ``memory_gb``."""
    import re

    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]I?|B)?B?\s*", str(text), flags=re.IGNORECASE)
    if not match:
        raise argparse.ArgumentTypeError(f"expected an amount of memory such as 16GB, 500MB or 16000 (MB), "
                                         f"got {text!r}")
    value = float(match.group(1)) * _MEMORY_UNITS[(match.group(2) or "").upper()] / 1e9
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text!r}")
    return value
