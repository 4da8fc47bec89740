"""The tiny simulated dataset is valid BIDS, reads back with pybids and mne-bids, and keeps its promises."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from spec2vol_bids.bids.validate import run_validator, validator_available
from spec2vol_bids.simulate import PRESETS, SIMULATION_DIR

from ..tools import require_tool

TINY = PRESETS["tiny"]


def _params(root: Path, sub: str) -> dict:
    path = root / SIMULATION_DIR / f"sub-{sub}" / "func" / f"sub-{sub}_task-rest_desc-simulation_params.json"
    return json.loads(path.read_text())


def test_tiny_passes_bids_validator(tiny_bids):
    require_tool(validator_available(), "bids-validator-deno")
    report = run_validator(tiny_bids)
    assert report.ok, report.summary()
    assert sorted(report.summary_info["subjects"]) == ["01", "02", "03", "04"]
    assert set(report.summary_info["modalities"]) >= {"EEG", "MRI"}


def test_layout_and_sidecars(tiny_bids):
    desc = json.loads((tiny_bids / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "raw" and desc["BIDSVersion"]
    parts = pd.read_csv(tiny_bids / "participants.tsv", sep="\t", dtype=str)
    assert list(parts["participant_id"]) == [f"sub-{i:02d}" for i in range(1, 5)]
    eeg_json = json.loads((tiny_bids / "sub-01/eeg/sub-01_task-rest_eeg.json").read_text())
    for key in ("TaskName", "EEGReference", "SamplingFrequency", "PowerLineFrequency", "SoftwareFilters",
                "EEGGround", "EEGPlacementScheme", "RecordingDuration", "EEGChannelCount"):
        assert key in eeg_json, key
    assert eeg_json["SamplingFrequency"] == TINY.sfreq
    assert eeg_json["PowerLineFrequency"] == TINY.line_freq
    assert eeg_json["EEGChannelCount"] == TINY.n_eeg
    chans = pd.read_csv(tiny_bids / "sub-01/eeg/sub-01_task-rest_channels.tsv", sep="\t")
    assert list(chans.columns[:3]) == ["name", "type", "units"] and len(chans) == TINY.n_eeg
    elec = pd.read_csv(next((tiny_bids / "sub-01/eeg").glob("*_electrodes.tsv")), sep="\t")
    assert set(chans["name"]) <= set(elec["name"])
    assert np.isfinite(elec[["x", "y", "z"]].to_numpy(float)).all()
    assert next((tiny_bids / "sub-01/eeg").glob("*_coordsystem.json"))
    bold_json = json.loads((tiny_bids / "sub-01/func/sub-01_task-rest_bold.json").read_text())
    assert bold_json == {"RepetitionTime": TINY.tr, "TaskName": "rest"}
    scans = pd.read_csv(tiny_bids / "sub-01/sub-01_scans.tsv", sep="\t")
    assert sorted(scans["filename"]) == ["eeg/sub-01_task-rest_eeg.vhdr", "func/sub-01_task-rest_bold.nii.gz"]


def test_bold_header(tiny_bids):
    img = nib.load(tiny_bids / "sub-02/func/sub-02_task-rest_bold.nii.gz")
    assert img.shape == (*TINY.grid, TINY.n_volumes)
    assert img.header.get_zooms() == pytest.approx((*TINY.voxel_mm, TINY.tr))
    assert img.header.get_xyzt_units() == ("mm", "sec")
    assert img.header.get_data_dtype() == np.int16
    data = np.asanyarray(img.dataobj)
    mask = nib.load(tiny_bids / SIMULATION_DIR / "sub-02/func/sub-02_task-rest_desc-brain_mask.nii.gz").get_fdata() > 0
    assert 0.05 < mask.mean() < 0.8  # a brain inside the field of view
    assert data[mask].mean() > 5 * data[~mask].mean()  # brain brighter than background
    nf = nib.load(tiny_bids / SIMULATION_DIR / "sub-02/func/sub-02_task-rest_desc-noisefree_bold.nii.gz")
    assert nf.shape == img.shape and np.allclose(nf.affine, img.affine)


def test_pybids_reads_pairs(tiny_bids):
    from bids import BIDSLayout

    layout = BIDSLayout(tiny_bids, derivatives=False)
    bold = layout.get(suffix="bold", extension=".nii.gz", return_type="filename")
    eeg = layout.get(suffix="eeg", extension=".vhdr", return_type="filename")
    assert len(bold) == len(eeg) == 4
    assert layout.get_tr(subject="03", task="rest") == TINY.tr
    assert layout.get_tasks() == ["rest"]


def _vmrk_markers(vmrk: Path) -> list[tuple[str, str, int]]:
    out = []
    for line in vmrk.read_text(encoding="utf-8").splitlines():
        m = re.match(r"Mk\d+=([^,]*),([^,]*),(\d+),", line)
        if m:
            out.append((m.group(1), m.group(2), int(m.group(3))))
    return out


def test_r128_markers_match_volumes(tiny_bids):
    for sub in ("01", "04"):
        markers = _vmrk_markers(tiny_bids / f"sub-{sub}/eeg/sub-{sub}_task-rest_eeg.vmrk")
        r128 = [pos for typ, desc, pos in markers if (typ, desc) == ("Response", "R128")]
        n_vol = nib.load(tiny_bids / f"sub-{sub}/func/sub-{sub}_task-rest_bold.nii.gz").shape[3]
        assert len(r128) == n_vol == TINY.n_volumes
        assert set(np.diff(r128)) == {TINY.samples_per_tr}  # one marker per TR, sample exact
        params = _params(tiny_bids, sub)
        # BrainVision positions are 1-based; FirstVolumeOnset is seconds from the first EEG sample
        assert (r128[0] - 1) / TINY.sfreq == pytest.approx(params["FirstVolumeOnset"])
        assert TINY.lead_in[0] <= params["FirstVolumeOnset"] <= TINY.lead_in[1]
        events = pd.read_csv(tiny_bids / f"sub-{sub}/eeg/sub-{sub}_task-rest_events.tsv", sep="\t")
        ev = events[events["trial_type"] == "Response/R128"]
        assert len(ev) == n_vol
        np.testing.assert_allclose(ev["onset"].to_numpy(), (np.asarray(r128) - 1) / TINY.sfreq, atol=1e-6)


def test_mne_bids_reads_back(tiny_bids):
    import mne
    from mne_bids import BIDSPath, read_raw_bids

    bp = BIDSPath(root=tiny_bids, subject="01", task="rest", datatype="eeg", suffix="eeg", extension=".vhdr")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raw = read_raw_bids(bp, verbose="error")
    assert raw.info["sfreq"] == TINY.sfreq and len(raw.ch_names) == TINY.n_eeg
    assert raw.info["line_freq"] == TINY.line_freq
    assert raw.get_montage() is not None
    params = _params(tiny_bids, "01")
    assert raw.n_times == params["RecordingSamples"]
    r128 = raw.annotations[raw.annotations.description == "Response/R128"]
    assert len(r128) == TINY.n_volumes
    assert r128.onset[0] == pytest.approx(params["FirstVolumeOnset"])
    # the .vmrk itself (read without events.tsv) carries the same markers
    direct = mne.io.read_raw_brainvision(bp.fpath, verbose="error")
    assert int(np.sum(direct.annotations.description == "Response/R128")) == TINY.n_volumes
    data = raw.get_data()  # volts
    assert np.isfinite(data).all()
    assert 5e-6 < data.std() < 100e-6  # EEG-like amplitudes (tens of microvolts)


def test_ground_truth_contract(tiny_bids):
    deriv = tiny_bids / SIMULATION_DIR
    desc = json.loads((deriv / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative" and desc["DatasetLinks"] == {"raw": "../../"}
    assert "FirstVolumeOnset" in (deriv / "README").read_text()
    nf_json = json.loads((deriv / "sub-01/func/sub-01_task-rest_desc-noisefree_bold.json").read_text())
    assert nf_json["Sources"] == ["bids:raw:sub-01/func/sub-01_task-rest_bold.nii.gz"]
    assert nf_json["RepetitionTime"] == TINY.tr
    params = _params(tiny_bids, "01")
    assert params["Seed"] == 0 and params["Preset"]["name"] == "tiny"
    for rel in params["Files"].values():
        assert (tiny_bids / rel).is_file(), rel
    ts = pd.read_csv(deriv / "sub-01/func/sub-01_task-rest_desc-sources_timeseries.tsv", sep="\t")
    assert len(ts) == TINY.n_volumes
    assert [c for c in ts.columns if c.endswith("_power")] == [f"{b.name}_power" for b in TINY.bands]
    assert (ts[[f"{b.name}_power" for b in TINY.bands]] > 0).all().all()
    ceiling = pd.read_csv(deriv / "noise_ceiling.tsv", sep="\t")
    assert len(ceiling) == 4
    assert ceiling["dynamic_correlation"].between(0.6, 0.95).all()
    assert ceiling["ssim"].between(0.5, 1.0).all() and (ceiling["psnr"] > 20).all()
    maps = nib.load(deriv / "sub-01/func/sub-01_desc-sources_map.nii.gz")
    assert maps.shape == (*TINY.grid, len(TINY.bands))


@pytest.mark.slow
def test_sessions_and_runs_layout(tmp_path):
    from spec2vol_bids.simulate import simulate_dataset

    root = simulate_dataset(tmp_path / "ds", subjects=1, sessions=2, runs=2, volumes=6, progress=False)
    bold = sorted(p.relative_to(root).as_posix() for p in root.glob("sub-*/ses-*/func/*_bold.nii.gz"))
    assert bold == [f"sub-01/ses-{s}/func/sub-01_ses-{s}_task-rest_run-{r}_bold.nii.gz"
                    for s in ("01", "02") for r in ("01", "02")]
    for ses in ("01", "02"):
        scans = pd.read_csv(root / f"sub-01/ses-{ses}/sub-01_ses-{ses}_scans.tsv", sep="\t")
        assert len(scans) == 4  # 2 EEG + 2 BOLD runs, concurrent pairs share the clock
        times = pd.to_datetime(scans["acq_time"].str.rstrip("Z"))
        assert times.is_unique
    ceiling = pd.read_csv(root / SIMULATION_DIR / "noise_ceiling.tsv", sep="\t", dtype=str)
    assert list(zip(ceiling["session"], ceiling["run"])) == [("01", "01"), ("01", "02"), ("02", "01"),
                                                              ("02", "02")]
    if validator_available():
        report = run_validator(root)
        assert report.ok, report.summary()
        assert sorted(report.summary_info["sessions"]) == ["ses-01", "ses-02"] or \
            sorted(report.summary_info["sessions"]) == ["01", "02"]


@pytest.mark.slow
def test_task_preset_events_and_ecg(tmp_path):
    """oddball-like (with an ECG channel added): stimulus markers in the .vmrk, both events.tsv files agree."""
    from spec2vol_bids.simulate import get_preset, simulate_dataset

    preset = get_preset("oddball-like").replace(n_eeg=8, ecg=True, grid=(64, 64, 4))
    root = simulate_dataset(tmp_path / "ds", preset=preset, subjects=1, runs=1, volumes=10, progress=False)
    stem = "sub-01_task-visualoddball"
    markers = _vmrk_markers(root / f"sub-01/eeg/{stem}_eeg.vmrk")
    stimuli = [(desc, pos) for typ, desc, pos in markers if typ == "Stimulus"]
    assert stimuli and {d for d, _ in stimuli} <= {"S  1", "S  2"}
    eeg_events = pd.read_csv(root / f"sub-01/eeg/{stem}_events.tsv", sep="\t")
    stim_rows = eeg_events[eeg_events["trial_type"].str.startswith("Stimulus/")]
    assert len(stim_rows) == len(stimuli)
    func_events = pd.read_csv(root / f"sub-01/func/{stem}_events.tsv", sep="\t")
    params = json.loads((root / SIMULATION_DIR / f"sub-01/func/{stem}_desc-simulation_params.json").read_text())
    np.testing.assert_allclose(func_events["onset"].to_numpy() + params["FirstVolumeOnset"],
                               stim_rows["onset"].to_numpy(), atol=1e-6)
    assert set(func_events["trial_type"]) <= {"standard", "target"}
    chans = pd.read_csv(root / f"sub-01/eeg/{stem}_channels.tsv", sep="\t")
    assert list(chans["type"]) == ["EEG"] * 8 + ["ECG"]
    eeg_json = json.loads((root / f"sub-01/eeg/{stem}_eeg.json").read_text())
    assert eeg_json["ECGChannelCount"] == 1 and eeg_json["PowerLineFrequency"] == 60.0
    assert eeg_json["SamplingFrequency"] == 1000.0
    if validator_available():
        report = run_validator(root)
        assert report.ok, report.summary()
