"""Tools the tests need that ``make install`` provides: skip without them, unless ``make test`` says they must exist.

``make test`` sets ``SPEC2VOL_REQUIRE_TOOLS=1``: a missing BIDS validator, hadolint, Chromium or console script then fails
the test (the installation is broken) instead of silently skipping it. A plain ``pytest`` run still skips.
"""

from __future__ import annotations

import os

import pytest

#: set by ``make test`` (and CI, which runs it)
REQUIRE_ENV = "SPEC2VOL_REQUIRE_TOOLS"


def tools_required() -> bool:
    """Whether the environment says the tools must be installed."""
    return os.environ.get(REQUIRE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def require_tool(available: bool, what: str) -> None:
    """Skip the calling test when ``what`` is missing, or fail when :func:`tools_required`."""
    if available:
        return
    message = f"{what} is not installed"
    if tools_required():
        pytest.fail(f"{message}, but `make test` installs it ({REQUIRE_ENV}=1): run `make install`")
    pytest.skip(message)


def needs(available_check, what: str):
    """A decorator version of :func:`require_tool` (``available_check`` is called when the test runs)."""
    def decorate(test):
        import functools

        @functools.wraps(test)
        def wrapper(*args, **kwargs):
            require_tool(bool(available_check()), what)
            return test(*args, **kwargs)

        return wrapper

    return decorate
