"""Tests of spec2vol_bids.config: defaults, round trips and validation messages."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tomllib

from spec2vol_bids.config import BOLDConfig, EEGConfig, PairingConfig, PreprocConfig
from spec2vol_bids.errors import Spec2VolError, UsageError
from spec2vol_bids.preproc import eeg as preproc_eeg
from spec2vol_bids.preproc import pairs as preproc_pairs


def test_defaults_are_the_official_pipeline():
    cfg = PreprocConfig()
    e, p, b = cfg.eeg, cfg.pairing, cfg.bold
    assert (e.window_length, e.overlap, e.taper, e.frequency_axis, e.n_freqs, e.log_power, e.scaling) == (
        None, 0.0, "boxcar", "bins", 249, False, "zscore-electrodes")
    assert e.exclude_types == () and e.include is None and e.volume_marker == "R128"
    assert (p.discard_volumes, p.n_windows, p.lag_volumes) == (6, 20, 0)
    assert (b.grid, b.n_slices, b.resize, b.scaling) == (64, None, "dct", "minmax")
    assert e.window_seconds(1.28) == (1.28, 1.28)
    assert EEGConfig(overlap=0.5).window_seconds(2.0) == (2.0, 4.0)


def test_round_trips(tmp_path):
    cfg = PreprocConfig(
        eeg=EEGConfig(window_length=2.5, overlap=0.5, taper="tukey", tukey_alpha=0.3, frequency_axis="hz",
                      n_freqs=100, fmin=0.5, fmax=45.0, log_power=True, scaling="zscore-channel",
                      include=("Cz", "Pz"), exclude=("Pz",), exclude_types=("ECG", "EOG"), volume_marker="V"),
        pairing=PairingConfig(discard_volumes=2, n_windows=10, lag_volumes=1, window_span_s=20.0, lag_s=6.0),
        bold=BOLDConfig(grid=32, n_slices=20, resize="none", scaling="zscore"),
    )
    assert PreprocConfig.from_dict(cfg.to_dict()) == cfg
    assert PreprocConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg  # as stored in the .h5 attrs
    text = cfg.to_toml()
    assert tomllib.loads(text)["eeg"]["include"] == ["Cz", "Pz"]
    assert PreprocConfig.from_toml(text) == cfg
    path = cfg.write_toml(tmp_path / "sub" / "config.toml")
    assert PreprocConfig.from_toml(path) == cfg
    assert PreprocConfig.from_toml(str(path)) == cfg
    assert PreprocConfig.from_toml(PreprocConfig().to_toml()) == PreprocConfig()
    assert list(tmp_path.joinpath("sub").iterdir()) == [path]  # atomic write left no temporary file


def test_partial_settings_and_replace():
    cfg = PreprocConfig.from_toml('[eeg]\ntaper = "hann"\n[bold]\nscaling = "minmax-mask"\n')
    assert cfg.eeg.taper == "hann" and cfg.eeg.n_freqs == 249 and cfg.bold.scaling == "minmax-mask"
    assert cfg.pairing == PairingConfig()
    new = cfg.replace(pairing={"lag_s": 6.0})
    assert new.pairing.lag_s == 6.0 and new.eeg.taper == "hann" and cfg.pairing.lag_s is None
    assert EEGConfig(n_freqs=100).n_freqs == 100 and isinstance(EEGConfig(fmax=40).fmax, float)


@pytest.mark.parametrize("data, match", [
    ({"eeg": {"taper": "han"}}, r"eeg\.taper = 'han'.*Did you mean 'hann'"),
    ({"eeg": {"tapper": "hann"}}, r"unknown setting eeg\.tapper.*Did you mean 'taper'"),
    ({"egg": {}}, r"unknown settings section \[egg\].*\[eeg\]"),
    ({"eeg": {"overlap": 1.0}}, r"eeg\.overlap = 1\.0 is out of range.*< 1"),
    ({"eeg": {"n_freqs": 2.5}}, r"eeg\.n_freqs = 2\.5 is not an integer"),
    ({"eeg": {"fmin": 50.0, "fmax": 40.0}}, r"eeg\.fmax .* above eeg\.fmin"),
    ({"eeg": {"log_power": "yes"}}, r"log_power"),
    ({"eeg": {"exclude_types": "ECG"}}, r"eeg\.exclude_types must be a list"),
    ({"eeg": {"include": []}}, r"eeg\.include is an empty list"),
    ({"eeg": {"window_length": 0}}, r"eeg\.window_length = 0 is out of range"),
    ({"pairing": {"n_windows": 0}}, r"pairing\.n_windows = 0 is out of range"),
    ({"pairing": {"discard_volumes": True}}, r"pairing\.discard_volumes = True is not an integer"),
    ({"bold": {"scaling": "minmax-brain"}}, r"bold\.scaling"),
    ({"bold": {"resize": "linear"}}, r"bold\.resize = 'linear'"),
    ({"bold": 3}, r"section \[bold\] must be a table"),
])
def test_validation_messages(data, match):
    with pytest.raises(UsageError, match=match) as info:
        PreprocConfig.from_dict(data)
    assert info.value.exit_code == 64 and "\n" not in str(info.value)


def test_bad_toml_and_missing_file(tmp_path):
    with pytest.raises(UsageError, match="not valid TOML"):
        PreprocConfig.from_toml("[eeg\ntaper = 'hann'\n")
    with pytest.raises(UsageError, match="does not exist"):
        PreprocConfig.from_toml(tmp_path / "nope.toml")


def test_every_setting_option_is_a_bidsapp_flag_that_sets_that_setting():
    """Messages name SETTING_OPTIONS as the fix; each must be a real BIDS-App option changing that setting."""
    from spec2vol_bids.cli.bidsapp import build_config, build_parser
    from spec2vol_bids.config import SETTING_OPTIONS

    parser = build_parser()
    flags = {s for a in parser._actions for s in a.option_strings}
    assert set(SETTING_OPTIONS.values()) <= flags
    values = {"eeg.volume_marker": ["T1"], "eeg.window_length": ["1.5"], "eeg.overlap": ["0.5"],
              "eeg.taper": ["hann"], "eeg.log_power": [], "eeg.frequency_axis": ["hz"], "eeg.n_freqs": ["7"],
              "eeg.fmin": ["2"], "eeg.fmax": ["30"], "eeg.scaling": ["none"], "eeg.include": ["Cz"],
              "eeg.exclude": ["ECG"], "eeg.exclude_types": ["EOG"], "eeg.keep_bad_channels": [],
              "pairing.n_windows": ["5"],
              "pairing.discard_volumes": ["2"], "pairing.lag_volumes": ["1"], "pairing.window_span_s": ["10"],
              "pairing.lag_s": ["4"], "bold.scaling": ["zscore"], "bold.resize": ["none"], "bold.n_slices": ["12"],
              "correction.method": ["gradient+bcg"], "correction.slice_marker": ["R  1"],
              "correction.ecg_channel": ["EKG"]}
    assert set(values) == set(SETTING_OPTIONS)
    default = PreprocConfig().to_dict()
    for key, flag in SETTING_OPTIONS.items():
        section, name = key.split(".")
        args = parser.parse_args(["bids", "out", "participant", flag, *values[key]])
        assert build_config(args).to_dict()[section][name] != default[section][name], flag


@pytest.mark.parametrize("call, flag", [
    (lambda: preproc_eeg.select_channels(["Cz", "Pz"], ["EEG", "EEG"], EEGConfig(exclude=("Cz", "Pz"))),
     "--exclude-channels"),
    (lambda: preproc_eeg.check_finite(np.array([[0.0, np.nan]]), 0, 250.0, ["Cz"]), "--exclude-channels"),
    (lambda: preproc_pairs.make_pairs(20), "--discard"),
    (lambda: preproc_eeg.frequency_axis(100, 250.0, EEGConfig()), "--n-freqs"),
    (lambda: PreprocConfig.from_dict({"eeg": {"overlap": 1.5}}), "--window-overlap"),
    (lambda: PreprocConfig.from_dict({"eeg": {"taper": "han"}}), "--taper"),
])
def test_hints_name_command_line_flags(call, flag):
    with pytest.raises(Spec2VolError) as info:
        call()
    assert flag in (info.value.hint or ""), info.value.one_line()
