"""``simulate --artefacts gradient,bcg``: EEG recorded inside the scanner, with the clean EEG kept as ground truth."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from spec2vol_bids.bids.eeg import EEGRecording, marker_onsets
from spec2vol_bids.bids.validate import run_validator, validator_available
from spec2vol_bids.cli.main import main
from spec2vol_bids.errors import UsageError
from spec2vol_bids.preproc.artefacts import LockedAverage, WelchPSD, harmonic_power
from spec2vol_bids.simulate import get_preset, simulate_dataset
from spec2vol_bids.simulate.dataset import parse_artefacts

from ..tools import needs

pytestmark = pytest.mark.slow  # simulated datasets: the full suite only

PRESET = get_preset("tiny").replace(n_subjects=1, n_volumes=12, n_eeg=6)
EEG = "sub-01/eeg/sub-01_task-rest_eeg"
CLEAN = "derivatives/simulation/sub-01/eeg/sub-01_task-rest_desc-clean_eeg"
PARAMS = "derivatives/simulation/sub-01/func/sub-01_task-rest_desc-simulation_params.json"


@pytest.fixture(scope="module")
def sims(tmp_path_factory):
    base = tmp_path_factory.mktemp("artefacts")
    kw = {"preset": PRESET, "sfreq": 1000.0, "seed": 5, "progress": False}
    return {
        "both": simulate_dataset(base / "both", artefacts="gradient,bcg", **kw),
        "again": simulate_dataset(base / "again", artefacts=["bcg", "gradient"], **kw),
        "bcg": simulate_dataset(base / "bcg", artefacts="bcg", **kw),
        # the same dataset without artefacts (an ECG channel as the bcg option adds one)
        "none": simulate_dataset(base / "none", **{**kw, "preset": PRESET.replace(ecg=True)}),
    }


def _data(root, stem):
    rec = EEGRecording(root / f"{stem}.vhdr", root / f"{EEG}.vhdr".replace("_eeg.vhdr", "_channels.tsv"))
    return rec, rec.raw.get_data() * 1e6  # uV


def _digest(root):
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_artefacts_are_added_to_the_clean_eeg_the_simulator_writes_without_them(sims):
    rec, raw = _data(sims["both"], EEG)
    _, clean = _data(sims["both"], CLEAN)
    assert rec.ch_names[-1] == "ECG" and rec.ch_types[-1] == "ECG"  # tiny has no ECG: bcg adds one
    # the clean EEG is, sample for sample, the EEG of the same simulation without artefacts
    plain = (sims["none"] / f"{EEG}.eeg").read_bytes()
    assert (sims["both"] / f"{CLEAN}.eeg").read_bytes() == plain
    assert (sims["both"] / f"{EEG}.eeg").read_bytes() != plain
    params = json.loads((sims["both"] / PARAMS).read_text())
    grad = params["Artefacts"]["Gradient"]
    assert params["Files"]["clean_eeg"] == f"{CLEAN}.vhdr"
    first, last = params["FirstVolumeSample"], params["FirstVolumeSample"] + 12 * 2000
    art = raw - clean
    # millivolts during the scan: RMS 0.3-1.2 mV per channel (the BCG adds a little)
    rms = art[:, first:last].std(axis=1)
    assert np.all((rms > 250) & (rms < 1300)), rms
    assert np.abs(art[:, : first - 5]).max() < 200  # before the scan only the pulse artefact (< 150 uV peak)
    # slice-locked: its power sits at the harmonics of the slice frequency, far above the bins between them
    psd = WelchPSD(art.shape[0], 1000.0, 2000)
    psd.push(art[:, first:last])
    f, p = psd.result()
    assert grad["SliceFrequency"] == pytest.approx(8 / 2.0, rel=1e-4)
    lines = harmonic_power(f, p, grad["SliceFrequency"], fmax=200.0)
    assert np.all(lines["ratio_db"] > 30.0), lines["ratio_db"]


def test_slice_markers_follow_the_scanner_with_sub_sample_jitter(sims):
    rec, _ = _data(sims["both"], EEG)
    params = json.loads((sims["both"] / PARAMS).read_text())
    grad = params["Artefacts"]["Gradient"]
    slices, name = marker_onsets(rec, "Slice")
    volumes, _ = marker_onsets(rec, "R128")
    assert name == "Response/Slice" and slices.size == 12 * 8 and volumes.size == 12
    slices = np.round(slices * 1000).astype(int)
    volumes = np.round(volumes * 1000).astype(int)
    assert set(volumes) <= set(slices)  # the first slice of each volume is logged with its R128
    # each trigger is logged at the first EEG sample at or after the true slice start (the scanner's clock)
    true = grad["FirstSliceOnsetSample"] + np.arange(slices.size) * grad["SlicePeriod"] * 1000.0
    late = slices - true
    assert np.all((late >= 0) & (late < 1)) and np.ptp(late) > 0.3  # jitter within a sample
    assert 0.2 <= grad["ClockDriftSamples"] <= 0.9
    events = (sims["both"] / f"{EEG}.vhdr").with_name("sub-01_task-rest_events.tsv").read_text()
    assert events.count("Response/Slice") == slices.size


def test_the_pulse_artefact_is_locked_to_the_r_peaks(sims):
    rec, raw = _data(sims["bcg"], EEG)
    _, clean = _data(sims["bcg"], CLEAN)
    art = raw - clean
    params = json.loads((sims["bcg"] / PARAMS).read_text())
    assert "Gradient" not in params["Artefacts"]
    assert marker_onsets(rec, "Slice")[0].size == 0  # no gradient, no slice markers
    np.testing.assert_array_equal(art[-1], 0)  # the ECG channel has no BCG
    peaks = np.round(np.asarray(params["Artefacts"]["BCG"]["RPeaks"]) * 1000).astype(int)
    avg = LockedAverage(peaks, art.shape[0] - 1, 200, 600)
    avg(0, art[:-1])
    mean, _, n = avg.result()
    assert n > 10
    peak_lag = np.abs(mean).argmax(axis=1) - 200  # ms after the R peak
    assert np.all((peak_lag > 120) & (peak_lag < 520)), peak_lag
    amplitude = np.abs(mean).max(axis=1)
    assert np.all((amplitude > 25) & (amplitude < 200)), amplitude
    # the shape varies from beat to beat: single beats differ from the average by more than rounding
    single = np.stack([art[:-1, p - 200:p + 600] for p in peaks[2:-2]])
    single -= single.mean(axis=-1, keepdims=True)
    assert np.std(single - mean[None]) > 0.02 * amplitude.mean()


def test_same_seed_same_bytes_and_the_ground_truth_is_bids_valid(sims):
    assert _digest(sims["both"]) == _digest(sims["again"])  # the order of the names does not matter
    assert f"{CLEAN}.json" in _digest(sims["both"]) and f"{CLEAN}.json" not in _digest(sims["none"])
    side = json.loads((sims["both"] / f"{CLEAN}.json").read_text())
    assert side["Sources"] == [f"bids:raw:{EEG}.vhdr"] and side["SamplingFrequency"] == 1000.0


@needs(validator_available, "bids-validator-deno")
def test_validator_accepts_the_raw_dataset_and_the_clean_eeg(sims):
    for root in (sims["both"], sims["both"] / "derivatives" / "simulation"):
        report = run_validator(root)
        assert report.ok and report.errors == [], report.summary()


def test_artefact_names_are_checked(tmp_path, capsys):
    assert parse_artefacts(None) == () and parse_artefacts("none") == ()
    assert parse_artefacts(" BCG , gradient ") == ("gradient", "bcg")
    with pytest.raises(UsageError, match="unknown artefact"):
        parse_artefacts("gradient,motion")
    code = main(["simulate", str(tmp_path / "x"), "--artefacts", "gradient,motion", "--no-progress"])
    assert code == 64 and "unknown artefact(s) motion" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
