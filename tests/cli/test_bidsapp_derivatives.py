"""BIDS-App with ``-d/--derivatives NAME=PATH``: targets from fMRIPrep-style preprocessed BOLD instead of the raw BOLD.

The fake fMRIPrep dataset holds sub-01's raw BOLD flipped left-right (a change that per-volume min-max scaling
keeps) on a shifted affine, with a box-shaped brain mask, so every target voxel tells which file it came from.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from spec2vol_bids.cli.main import main

from .test_bidsapp import derivative_files, run_cli

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

SPACE = "MNI152NLin2009cAsym"
PREPROC = f"sub-01_task-rest_space-{SPACE}_desc-preproc_bold"
SHIFT = np.array([1.0, -2.0, 3.0])  # mm added to the raw affine's origin


def make_fmriprep(root: Path, raw_bids: Path, *, n_volumes: int | None = None, mask: bool = True) -> Path:
    """A minimal fMRIPrep derivatives dataset with sub-01's BOLD flipped along x (optionally fewer volumes)."""
    func = root / "sub-01" / "func"
    func.mkdir(parents=True)
    (root / "dataset_description.json").write_text(json.dumps({
        "Name": "fMRIPrep - fMRI PREProcessing workflow", "BIDSVersion": "1.9.0", "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "fMRIPrep", "Version": "25.2.0"}]}))
    raw = nib.load(raw_bids / "sub-01" / "func" / "sub-01_task-rest_bold.nii.gz")
    data = np.flip(np.asarray(raw.dataobj, dtype=np.float32), axis=0)[..., :n_volumes]  # [X, Y, Z, T]
    affine = raw.affine.copy()
    affine[:3, 3] += SHIFT
    nib.save(nib.Nifti1Image(data, affine), func / f"{PREPROC}.nii.gz")
    (func / f"{PREPROC}.json").write_text(json.dumps({"RepetitionTime": 2.0, "SkullStripped": False}))
    if mask:
        box = np.zeros(data.shape[:3], dtype=np.uint8)
        box[10:50, 12:52, 1:7] = 1
        nib.save(nib.Nifti1Image(box, affine), func / f"sub-01_task-rest_space-{SPACE}_desc-brain_mask.nii.gz")
    return root


@pytest.fixture(scope="module")
def fmriprep(tiny_bids, tmp_path_factory):
    return make_fmriprep(tmp_path_factory.mktemp("deriv") / "fmriprep", tiny_bids)


def minmax(data: np.ndarray) -> np.ndarray:
    """Per-volume min-max scaling of [X, Y, Z, T] (the default target scaling), in float64."""
    lo = data.min(axis=(0, 1, 2), keepdims=True)
    hi = data.max(axis=(0, 1, 2), keepdims=True)
    return (data - lo) / (hi - lo)


def test_targets_come_from_the_preprocessed_bold(tiny_bids, fmriprep, tmp_path):
    out = tmp_path / "out"
    assert run_cli(tiny_bids, out, tmp_path / "work", "--participant-label", "01", "-d", f"fmriprep={fmriprep}") == 0
    func = out / "sub-01" / "func"
    # named in fMRIPrep's space (the grid is already the model grid: no res entity)
    target = nib.load(func / f"sub-01_task-rest_space-{SPACE}_desc-target_bold.nii.gz")
    preproc = nib.load(fmriprep / "sub-01" / "func" / f"{PREPROC}.nii.gz")
    raw = nib.load(tiny_bids / "sub-01" / "func" / "sub-01_task-rest_bold.nii.gz")
    got = np.asarray(target.dataobj, dtype=np.float64)
    assert got.shape == (64, 64, 8, 72)  # fMRIPrep keeps every volume: one target per raw volume
    np.testing.assert_allclose(got, minmax(np.asarray(preproc.dataobj, dtype=np.float64)), atol=1e-5)
    raw_target = minmax(np.asarray(raw.dataobj, dtype=np.float64))
    assert np.abs(got - raw_target).max() > 0.1  # not the raw BOLD ...
    np.testing.assert_allclose(got, np.flip(raw_target, axis=0), atol=1e-5)  # ... but its flipped copy
    np.testing.assert_allclose(target.affine, preproc.affine, atol=1e-5)  # the derivative's grid and space
    assert target.header.get_zooms()[3] == pytest.approx(2.0)
    # the brain mask is fMRIPrep's (a box), not one computed from the data
    mask = np.asarray(nib.load(func / f"sub-01_task-rest_space-{SPACE}_desc-brain_mask.nii.gz").dataobj)
    expected = np.zeros((64, 64, 8), dtype=np.uint8)
    expected[10:50, 12:52, 1:7] = 1
    np.testing.assert_array_equal(mask, expected)

    uri = f"bids:fmriprep:sub-01/func/{PREPROC}.nii.gz"
    mask_uri = f"bids:fmriprep:sub-01/func/sub-01_task-rest_space-{SPACE}_desc-brain_mask.nii.gz"
    side = json.loads((func / f"sub-01_task-rest_space-{SPACE}_desc-target_bold.json").read_text())
    assert side["Sources"] == [uri, mask_uri]
    assert side["BoldSource"] == {"Dataset": "fmriprep", "File": uri, "Space": SPACE, "Mask": mask_uri}
    assert side["RepetitionTime"] == 2.0
    assert json.loads((func / f"sub-01_task-rest_space-{SPACE}_desc-brain_mask.json").read_text())["Sources"] \
        == [mask_uri]
    # the EEG side still names the raw BOLD it is paired with
    spec_side = json.loads(next(out.rglob("*_desc-stft_spectrogram.json")).read_text())
    assert "bids:raw:sub-01/func/sub-01_task-rest_bold.nii.gz" in spec_side["Sources"]
    desc = json.loads((out / "dataset_description.json").read_text())
    assert desc["DatasetLinks"]["fmriprep"] == fmriprep.resolve().as_uri()
    assert {"URL": fmriprep.resolve().as_uri()} in desc["SourceDatasets"]
    # the recorded settings say where the target came from
    toml = tomllib.loads(next((out / "sub-01" / "log").glob("*/spec2vol.toml")).read_text())
    execution = toml["execution"]
    assert execution["derivatives"] == {"fmriprep": str(fmriprep.resolve())}
    assert execution["bold_space"] == SPACE
    source = execution["bold_sources"]["sub-01_task-rest"]
    assert source["dataset"] == "fmriprep" and source["space"] == SPACE
    assert source["file"] == str(fmriprep.resolve() / "sub-01" / "func" / f"{PREPROC}.nii.gz")
    assert source["mask"].endswith("_desc-brain_mask.nii.gz") and source["repetition_time"] == 2.0


def test_without_derivatives_the_raw_source_is_recorded(tiny_bids, tmp_path):
    out = tmp_path / "out"
    assert run_cli(tiny_bids, out, tmp_path / "work", "--participant-label", "02") == 0
    side = json.loads(next(out.rglob("*_desc-target_bold.json")).read_text())
    uri = "bids:raw:sub-02/func/sub-02_task-rest_bold.nii.gz"
    assert side["Sources"] == [uri] and side["BoldSource"] == {"Dataset": "raw", "File": uri, "Space": "native"}
    toml = tomllib.loads(next((out / "sub-02" / "log").glob("*/spec2vol.toml")).read_text())
    assert toml["execution"]["bold_sources"]["sub-02_task-rest"] == {
        "dataset": "raw", "file": str(tiny_bids / "sub-02" / "func" / "sub-02_task-rest_bold.nii.gz")}
    assert "derivatives" not in toml["execution"]


def test_run_without_a_match_exits_66_and_writes_nothing(tiny_bids, fmriprep, tmp_path, capsys):
    out = tmp_path / "out"
    code = run_cli(tiny_bids, out, tmp_path / "work", "--participant-label", "01", "-d", f"fmriprep={fmriprep}",
                   "--bold-space", "T1w")
    assert code == 66
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("spec2vol_bids: error:")]
    assert len(lines) == 1  # one line: what is wrong, then what to do
    err = lines[0]
    assert "sub-01_task-rest" in err and str(fmriprep.resolve()) in err and "space-T1w" in err
    assert f"it has space {SPACE}" in err and "--bold-space" in err and "drop -d" in err
    assert not out.exists()
    # a subject that fMRIPrep did not process is the same error (no silent fall back to the raw BOLD)
    assert run_cli(tiny_bids, out, tmp_path / "work", "--participant-label", "02",
                   "-d", f"fmriprep={fmriprep}") == 66
    assert "sub-02_task-rest" in capsys.readouterr().err and not out.exists()


def test_volume_count_mismatch_exits_65_and_writes_nothing(tiny_bids, tmp_path, capsys):
    short = make_fmriprep(tmp_path / "fmriprep", tiny_bids, n_volumes=70, mask=False)
    out = tmp_path / "out"
    code = run_cli(tiny_bids, out, tmp_path / "work", "--participant-label", "01", "-d", f"fmriprep={short}")
    assert code == 65
    err = capsys.readouterr().err
    assert "has 70 volumes but the raw run sub-01_task-rest_bold.nii.gz has 72" in err
    assert "fMRIPrep keeps every volume" in err
    assert not out.exists() and derivative_files(out) == []


@pytest.mark.parametrize("value, message", [
    ("fmriprep", "expected NAME=PATH"),
    ("=/data", "expected NAME=PATH"),
    ("fmri prep={deriv}", "invalid derivatives name"),
    ("raw={deriv}", "invalid derivatives name"),
    ("fmriprep={missing}", "does not exist"),
    ("fmriprep={bids}", "not a derivatives dataset"),
])
def test_bad_derivatives_argument_is_a_usage_error(tiny_bids, fmriprep, tmp_path, capsys, value, message):
    value = value.format(deriv=fmriprep, missing=tmp_path / "missing", bids=tiny_bids)
    with pytest.raises(SystemExit) as exc:
        main([str(tiny_bids), str(tmp_path / "out"), "participant", "-d", value])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "argument -d/--derivatives" in err and message in err
    assert not (tmp_path / "out").exists()


def test_repeated_name_and_bad_space_are_usage_errors(tiny_bids, fmriprep, tmp_path, capsys):
    base = [str(tiny_bids), str(tmp_path / "out"), "participant"]
    with pytest.raises(SystemExit) as exc:
        main([*base, "-d", f"fp={fmriprep}", "-d", f"fp={fmriprep}"])
    assert exc.value.code == 2 and "given twice" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main([*base, "-d", f"fp={fmriprep}", "--bold-space", "MNI152NLin2009cAsym:res2"])
    assert exc.value.code == 2 and "invalid modifier" in capsys.readouterr().err
    # --bold-space alone would silently keep the raw BOLD: refused
    assert main([*base, "--bold-space", "T1w", "--skip-bids-validation"]) == 64
    assert "without -d/--derivatives" in capsys.readouterr().err
    # the derivatives dataset is never an output folder
    assert main([str(tiny_bids), str(fmriprep), "participant", "-d", f"fmriprep={fmriprep}",
                 "--skip-bids-validation"]) == 64
    assert not (tmp_path / "out").exists()
