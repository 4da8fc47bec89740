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


@pytest.mark.parametrize(("text", "gb"), [
    ("16000", 16.0), ("500", 0.5), ("16GB", 16.0), ("16gb", 16.0), ("500MB", 0.5), ("16G", 16.0),
    ("1.5T", 1500.0), ("8GiB", 8 * 2**30 / 1e9), ("2048 MB", 2.048), ("750K", 0.00075),
])
def test_memory_follows_fmriprep(text, gb):
    from spec2vol_bids.cli.argtypes import memory_gb

    assert memory_gb(text) == pytest.approx(gb)


@pytest.mark.parametrize("text", ["", "GB", "-1GB", "0", "1e3", "16 PB", "sixteen"])
def test_memory_rejects_nonsense(text):
    from spec2vol_bids.cli.argtypes import memory_gb

    with pytest.raises(argparse.ArgumentTypeError):
        memory_gb(text)


def test_mem_option_reaches_nipype_in_gb(caplog):
    from spec2vol_bids.cli.bidsapp import _plugin_settings, build_parser

    parser = build_parser()
    base = ["bids", "out", "participant", "--nprocs", "2"]
    for flag, gb in ((["--mem", "16GB"], 16.0), (["--mem", "16000"], 16.0), (["--mem_mb", "8000"], 8.0),
                     (["--mem-gb", "4"], 4.0)):
        args = parser.parse_args([*base, *flag])
        assert _plugin_settings(args, "cpu")["plugin_args"]["memory_gb"] == pytest.approx(gb)
    # a bare number is megabytes, as in fMRIPrep: a user thinking in GB is told
    with caplog.at_level("WARNING", logger="spec2vol_bids"):
        settings = _plugin_settings(parser.parse_args([*base, "--mem", "16"]), "cpu")
    assert settings["plugin_args"]["memory_gb"] == pytest.approx(0.016)
    assert "--mem 16 means 16 MB" in caplog.text and "--mem 16GB" in caplog.text
    with pytest.raises(SystemExit) as exc:
        parser.parse_args([*base, "--mem", "lots"])
    assert exc.value.code == 2
