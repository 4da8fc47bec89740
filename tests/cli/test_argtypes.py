"""The shared argument types reject out-of-range numbers with argparse's usage error (exit 2)."""

import argparse

import pytest

from spec2vol_bids.cli.argtypes import nonnegative_int, positive_float, positive_int
from spec2vol_bids.cli.main import main


@pytest.mark.parametrize(("parse", "good", "bad"), [
    (positive_int, ("1", 1), ["0", "-3", "1.5", "x"]),
    (nonnegative_int, ("0", 0), ["-1", "two"]),
    (positive_float, ("0.25", 0.25), ["0", "-1e-3", "nan?"]),
])
def test_ranges(parse, good, bad):
    assert parse(good[0]) == good[1]
    for text in bad:
        with pytest.raises(argparse.ArgumentTypeError):
            parse(text)


@pytest.mark.parametrize("argv", [
    ["simulate", "out", "--subjects", "0"],
    ["train", "d", "m", "--lr", "0"],
    ["bids", "out", "participant", "--nprocs", "0"],
])
def test_cli_rejects_out_of_range(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "must be" in capsys.readouterr().err
