"""The BIDS-App with EEG recorded in the scanner: ``-d eegprep=PATH --eeg-desc`` and ``--eeg-correction``."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from spec2vol_bids.io.spectrogram import load_spectrogram
from spec2vol_bids.simulate import get_preset, simulate_dataset

from .test_bidsapp import derivative_files, run_cli
from .test_bidsapp_derivatives import make_fmriprep

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

pytestmark = pytest.mark.slow

SPEC = "sub-01/eeg/sub-01_task-rest_desc-stft_spectrogram"
TWIN = "sub-01/eeg/sub-01_task-rest_desc-preproc_eeg"


def make_eegprep(root: Path, raw_bids: Path, subjects=("01",), desc="preproc") -> Path:
    """A derivatives dataset holding each subject's raw EEG, unchanged, under its preprocessed name."""
    root.mkdir(parents=True)
    (root / "dataset_description.json").write_text(json.dumps({
        "Name": "EEG preprocessed elsewhere", "BIDSVersion": "1.10.0", "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "BrainVision Analyzer"}]}))
    for sub in subjects:
        src = raw_bids / f"sub-{sub}" / "eeg"
        dst = root / f"sub-{sub}" / "eeg"
        dst.mkdir(parents=True)
        stem, new = f"sub-{sub}_task-rest_eeg", f"sub-{sub}_task-rest_desc-{desc}_eeg"
        for ext in (".vhdr", ".vmrk"):  # BrainVision headers name their companion files
            text = (src / f"{stem}{ext}").read_text(encoding="utf-8")
            (dst / f"{new}{ext}").write_text(text.replace(f"{stem}.", f"{new}."), encoding="utf-8")
        shutil.copy(src / f"{stem}.eeg", dst / f"{new}.eeg")
        shutil.copy(src / f"{stem}.json", dst / f"{new}.json")
    return root


@pytest.fixture(scope="module")
def eegprep(tiny_bids, tmp_path_factory):
    return make_eegprep(tmp_path_factory.mktemp("eegprep") / "eegprep", tiny_bids)


def test_a_raw_run_and_its_eegprep_twin_give_the_same_pairing_and_alignment(tiny_bids, tiny_derivatives, eegprep,
                                                                             tmp_path):
    out = tmp_path / "out"
    assert run_cli(tiny_bids, out, tmp_path / "work", "--participant-label", "01", "-d", f"eegprep={eegprep}") == 0
    raw, twin = (load_spectrogram(root / f"{SPEC}.h5") for root in (tiny_derivatives, out))
    np.testing.assert_array_equal(twin.volume_onsets, raw.volume_onsets)
    np.testing.assert_array_equal(twin.valid, raw.valid)
    np.testing.assert_array_equal(twin.pair_windows, raw.pair_windows)
    np.testing.assert_array_equal(twin.pair_targets, raw.pair_targets)
    np.testing.assert_array_equal(twin.spectrogram, raw.spectrogram)  # identical EEG, identical spectrogram
    assert twin.channels == raw.channels and twin.attrs["onset_source"] == raw.attrs["onset_source"] == "markers"
    side_raw, side = (json.loads((root / f"{SPEC}.json").read_text()) for root in (tiny_derivatives, out))
    uri = f"bids:eegprep:{TWIN}.vhdr"
    assert side["Sources"] == [uri, "bids:raw:sub-01/func/sub-01_task-rest_bold.nii.gz"]
    assert side["EEGSource"] == {"Dataset": "eegprep", "File": uri, "Desc": "preproc"}
    assert side_raw["EEGSource"] == {"Dataset": "raw", "File": "bids:raw:sub-01/eeg/sub-01_task-rest_eeg.vhdr"}
    assert side["ArtefactQC"] == side_raw["ArtefactQC"]  # the same QC of the same samples
    # the target still comes from the raw BOLD; the dataset is linked so that the URI resolves
    target = json.loads(next(out.rglob("*_desc-target_bold.json")).read_text())
    assert target["BoldSource"]["Dataset"] == "raw"
    links = json.loads((out / "dataset_description.json").read_text())["DatasetLinks"]
    assert Path(links["eegprep"].removeprefix("file://")) == eegprep.resolve()
    toml = tomllib.loads(next((out / "sub-01" / "log").glob("*/spec2vol.toml")).read_text())
    assert toml["execution"]["eeg_sources"]["sub-01_task-rest"]["file"] == str(eegprep / f"{TWIN}.vhdr")
    assert toml["execution"]["eeg_desc"] == "preproc" and "bold_space" not in toml["execution"]
    assert uri in (out / "sub-01.html").read_text()


def test_eegprep_without_a_match_and_wrong_options_write_nothing(tiny_bids, eegprep, tmp_path, capsys):
    out, work = tmp_path / "out", tmp_path / "work"
    # no fallback to the raw EEG: a subject eegprep does not have is an error
    assert run_cli(tiny_bids, out, work, "--participant-label", "02", "-d", f"eegprep={eegprep}") == 66
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("spec2vol_bids: error:")]
    assert len(err) == 1 and "no preprocessed EEG of sub-02_task-rest (desc-preproc" in err[0]
    assert "--eeg-desc" in err[0] and not out.exists()
    assert run_cli(tiny_bids, out, work, "--participant-label", "01", "-d", f"eegprep={eegprep}",
                   "--eeg-desc", "clean") == 66
    assert "it has desc preproc" in capsys.readouterr().err and not out.exists()
    assert run_cli(tiny_bids, out, work, "--participant-label", "01", "--eeg-desc", "preproc") == 64
    assert "--eeg-desc was given without -d" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.10.0", '
                                                    '"DatasetType": "derivative"}')
    assert run_cli(tiny_bids, out, work, "--participant-label", "01", "-d", f"x={empty}") == 66
    assert "holds neither preprocessed BOLD" in capsys.readouterr().err
    fmriprep = make_fmriprep(tmp_path / "fmriprep", tiny_bids)
    assert run_cli(tiny_bids, out, work, "--participant-label", "01", "-d", f"fmriprep={fmriprep}",
                   "--eeg-desc", "preproc") == 64
    assert "no -d dataset holds EEG" in capsys.readouterr().err
    # tiny has no ECG channel: the pulse correction is refused before anything runs
    assert run_cli(tiny_bids, out, work, "--participant-label", "01", "--eeg-correction", "gradient+bcg") == 65
    assert "has no ECG channel" in capsys.readouterr().err
    assert not out.exists() and derivative_files(out) == []


@pytest.fixture(scope="module")
def inside(tmp_path_factory):
    """EEG recorded inside the scanner: 30 volumes, 6 EEG channels and an ECG at 1 kHz, 16 slices per TR."""
    preset = get_preset("tiny").replace(n_subjects=1, n_volumes=30, n_eeg=6, grid=(64, 64, 16))
    return simulate_dataset(tmp_path_factory.mktemp("inside") / "bids", preset=preset, sfreq=1000.0,
                            artefacts="gradient,bcg", seed=1, progress=False)


@pytest.fixture(scope="module")
def inside_outputs(inside, tmp_path_factory):
    """The BIDS-App on that dataset with ``--eeg-correction gradient+bcg`` and with the default (none)."""
    root = tmp_path_factory.mktemp("inside_out")
    corrected, plain = root / "corrected", root / "plain"
    assert run_cli(inside, corrected, root / "w1", "--eeg-correction", "gradient+bcg") == 0
    assert run_cli(inside, plain, root / "w2") == 0  # artefact is a warning, not an error
    return corrected, plain


def test_correction_in_the_bidsapp_and_the_report_warning_without_it(inside, inside_outputs, tmp_path):
    (corrected, plain), clean = inside_outputs, tmp_path / "clean"
    # the simulator's clean EEG, taken as preprocessed EEG from its derivatives dataset
    assert run_cli(inside, clean, tmp_path / "w3", "-d", f"sim={inside / 'derivatives' / 'simulation'}",
                   "--eeg-desc", "clean", "--eeg-scaling", "none") == 0
    side = json.loads((corrected / f"{SPEC}.json").read_text())
    assert side["ArtefactCorrection"]["Method"] == "gradient+bcg"
    assert side["ArtefactQC"]["ArtefactDetected"] == {"Gradient": False, "Cardiac": False}
    assert side["ArtefactQC"]["Gradient"]["Triggers"] == "slice" and side["ArtefactWarnings"] == []
    assert min(side["ArtefactQC"]["Gradient"]["Reduction"]) > 25 and min(side["ArtefactQC"]["Cardiac"]["Reduction"]) > 15
    assert side["Sources"][0] == "bids:raw:sub-01/eeg/sub-01_task-rest_eeg.vhdr"  # not the work-dir copy
    report = (corrected / "sub-01.html").read_text()
    assert 'id="artefacts"' in report and 'class="alert"' not in report
    assert (corrected / "sub-01" / "figures" / "sub-01_task-rest_desc-artefacts_eeg.png").is_file()
    warned = json.loads((plain / f"{SPEC}.json").read_text())
    assert warned["ArtefactQC"]["ArtefactDetected"]["Gradient"] is True
    report = (plain / "sub-01.html").read_text()
    assert report.count('class="alert"') == 2  # at the top and in the artefact section
    assert '<span class="nowrap">--eeg-correction</span> is none' in report
    # through the app: the corrected spectrogram agrees with the clean one (unscaled, below 40 Hz)
    assert json.loads((clean / f"{SPEC}.json").read_text())["EEGSource"]["Desc"] == "clean"
    assert run_cli(inside, tmp_path / "corr_lin", tmp_path / "w1", "--eeg-correction", "gradient+bcg",
                   "--eeg-scaling", "none") == 0
    a, b = (load_spectrogram(root / f"{SPEC}.h5") for root in (tmp_path / "corr_lin", clean))
    keep = [i for i, t in enumerate(a.channel_types) if t == "EEG"]
    low = a.frequencies < 40
    x, y = a.spectrogram[a.valid][:, keep][:, :, low], b.spectrogram[b.valid][:, keep][:, :, low]
    assert np.corrcoef(x.ravel(), y.ravel())[0, 1] >= 0.92


def test_the_artefact_reports_render_in_a_browser(inside_outputs, tmp_path):
    """Both reports in headless Chromium: the artefact figure decodes, nothing errs; the red warning is drawn."""
    import os

    from ..browser import assert_renders, chromium_available
    from ..tools import require_tool

    require_tool(chromium_available(), "chromium (Debian package chromium)")
    shots = Path(os.environ.get("SPEC2VOL_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    captions = {"corrected": "Power spectrum (mean over channels) before and after correction",
                "plain": "Power spectrum (mean over channels) of the EEG as used (not corrected)"}
    for root, name in zip(inside_outputs, ("corrected", "plain")):
        seen = assert_renders(root / "sub-01.html", shots / f"artefacts_{name}.png", min_images=4)
        assert any(img["alt"].startswith(captions[name])  # the artefact figure decoded
                   for img in seen.images), [img["alt"] for img in seen.images]
    from PIL import Image

    # the warning of the uncorrected run is drawn in red at the top of the page; the corrected run has none
    def red_rows(png):
        rgb = np.asarray(Image.open(png).convert("RGB"), dtype=int)[:800]
        red = (rgb[..., 0] > 150) & (rgb[..., 1] < 120) & (rgb[..., 2] < 120)
        return int(red.any(axis=1).sum())

    assert red_rows(shots / "artefacts_plain.png") > red_rows(shots / "artefacts_corrected.png")
