"""The outputs as other tools see them: the BIDS validator, PyBIDS, and the space of every image.

One module-scoped set of runs of the BIDS-App on two subjects of the tiny dataset:

* ``raw``: targets from the raw BOLD, predictions with a (cheap, random ridge) checkpoint, then ``group``;
* ``fmriprep``: targets from a fake fMRIPrep dataset, first in its default ``MNI152NLin2009cAsym`` space on the
  raw grid (with predictions), then ``--bold-space T1w:res-2`` on a smaller grid that is resampled to the model
  grid, both into one OUT_DIR, then ``group``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from spec2vol_bids.bids.validate import run_validator, validator_available
from spec2vol_bids.cli.main import main
from spec2vol_bids.io.spectrogram import load_spectrogram

from ..tools import require_tool
from .test_bidsapp import copy_dataset, run_cli
from .test_bidsapp_derivatives import SPACE, make_fmriprep
from .test_bidsapp_model import _checkpoint

pytestmark = pytest.mark.slow

MNI = f"space-{SPACE}"
T1W = "space-T1w_res-model"


def add_spaces(fmriprep: Path, raw_bids: Path) -> None:
    """Two more series of sub-01 in the fake fMRIPrep dataset: ``space-T1w_res-2`` on a 48 x 56 x 8 crop (not the
    model grid), and the ``func`` space (no space entity) on the raw grid."""
    raw = nib.load(raw_bids / "sub-01" / "func" / "sub-01_task-rest_bold.nii.gz")
    data = np.asarray(raw.dataobj, dtype=np.float32)
    func = fmriprep / "sub-01" / "func"
    for name, arr in (("sub-01_task-rest_space-T1w_res-2_desc-preproc_bold", data[4:52, 4:60]),
                      ("sub-01_task-rest_desc-preproc_bold", data)):
        nib.save(nib.Nifti1Image(arr, raw.affine), func / f"{name}.nii.gz")
        (func / f"{name}.json").write_text(json.dumps({"RepetitionTime": 2.0, "SkullStripped": False}))


def tree_hash(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def outputs(tiny_bids, tiny_derivatives, tmp_path_factory):
    root = tmp_path_factory.mktemp("outputs")
    bids = copy_dataset(tiny_bids, root / "bids", subjects=("01", "02"))
    channels = load_spectrogram(next(tiny_derivatives.rglob("sub-01_*_desc-stft_spectrogram.h5")),
                                data=False).channels
    ckpt = _checkpoint(root / "model.ckpt", channels)
    raw = root / "raw"
    assert run_cli(bids, raw, root / "work", "--model", ckpt, "--device", "cpu") == 0
    assert main([str(bids), str(raw), "group"]) == 0
    fmriprep = make_fmriprep(root / "fmriprep", bids)
    add_spaces(fmriprep, bids)
    fp = root / "fp"
    common = ("--participant-label", "01", "-d", f"fmriprep={fmriprep}")
    assert run_cli(bids, fp, root / "work", *common, "--model", ckpt, "--device", "cpu") == 0
    assert run_cli(bids, fp, root / "work", *common, "--bold-space", "T1w:res-2") == 0
    assert main([str(bids), str(fp), "group"]) == 0
    return {"bids": bids, "raw": raw, "fp": fp, "fmriprep": fmriprep, "work": root / "work"}


@pytest.mark.parametrize("which", ["raw", "fp"])
def test_every_output_passes_the_bids_validator(outputs, which):
    """0 errors on participant + prediction + group outputs; no SpatialReference warning left."""
    require_tool(validator_available(), "bids-validator-deno")
    out = outputs[which]
    assert list(out.rglob("*_desc-spec2vol_bold.nii.gz")) and (out / "group_metrics.tsv").is_file()
    report = run_validator(out)
    assert report.ok and report.errors == [], report.summary()
    assert not [w for w in report.warnings if w.sub_code == "SpatialReference"], report.summary()
    assert sorted(report.summary_info["subjects"]) == (["01", "02"] if which == "raw" else ["01"])


def test_images_are_named_and_coded_in_their_space(outputs):
    fp, fmriprep = outputs["fp"], outputs["fmriprep"]
    func = fp / "sub-01" / "func"
    names = sorted(p.name for p in func.glob("*.nii.gz"))
    assert names == sorted([
        f"sub-01_task-rest_{MNI}_desc-brain_mask.nii.gz", f"sub-01_task-rest_{MNI}_desc-target_bold.nii.gz",
        f"sub-01_task-rest_{MNI}_desc-spec2vol_bold.nii.gz",
        f"sub-01_task-rest_{T1W}_desc-brain_mask.nii.gz", f"sub-01_task-rest_{T1W}_desc-target_bold.nii.gz"])
    src = "bids:fmriprep:sub-01/func/sub-01_task-rest_{}_desc-preproc_bold.nii.gz"
    # MNI template on the model grid already: the source's (absent) res, MNI xform codes, as fMRIPrep writes
    for desc in ("target_bold", "brain_mask", "spec2vol_bold"):
        img = nib.load(func / f"sub-01_task-rest_{MNI}_desc-{desc}.nii.gz")
        assert (int(img.header["qform_code"]), int(img.header["sform_code"])) == (4, 4)
        side = json.loads((func / f"sub-01_task-rest_{MNI}_desc-{desc}.json").read_text())
        assert side["SpatialReference"] == src.format(MNI) and "Resolution" not in side
    # T1w (not a template) on another grid: aligned codes, res-model with its Resolution
    target = nib.load(func / f"sub-01_task-rest_{T1W}_desc-target_bold.nii.gz")
    assert target.shape == (64, 64, 30, 72)
    assert (int(target.header["qform_code"]), int(target.header["sform_code"])) == (2, 2)
    preproc = nib.load(fmriprep / "sub-01" / "func" / "sub-01_task-rest_space-T1w_res-2_desc-preproc_bold.nii.gz")
    corners = np.array([[-0.5, -0.5, -0.5, 1.0], [*(np.array(preproc.shape[:3]) - 0.5), 1.0]]).T
    new_corners = np.array([[-0.5, -0.5, -0.5, 1.0], [63.5, 63.5, 29.5, 1.0]]).T
    np.testing.assert_allclose(target.affine @ new_corners, preproc.affine @ corners, atol=1e-4)  # same FOV
    side = json.loads((func / f"sub-01_task-rest_{T1W}_desc-target_bold.json").read_text())
    assert side["SpatialReference"] == src.format("space-T1w_res-2")
    assert "64 x 64 x 30 voxels" in side["Resolution"] and "space-T1w_res-2_desc-preproc_bold" in side["Resolution"]
    assert side["BoldSource"]["Space"] == "T1w:res-2"
    # raw BOLD: no space entity, scanner codes, aligned with the raw series
    raw_func = outputs["raw"] / "sub-01" / "func"
    for desc in ("target_bold", "brain_mask", "spec2vol_bold"):
        img = nib.load(raw_func / f"sub-01_task-rest_desc-{desc}.nii.gz")
        assert (int(img.header["qform_code"]), int(img.header["sform_code"])) == (1, 1)
        side = json.loads((raw_func / f"sub-01_task-rest_desc-{desc}.json").read_text())
        assert side["SpatialReference"] == "bids:raw:sub-01/func/sub-01_task-rest_bold.nii.gz"
    assert json.loads((raw_func / "sub-01_task-rest_desc-target_bold.json").read_text())["BoldSource"]["Space"] \
        == "native"
    # the group table names each predicted run with its space
    rows = (outputs["fp"] / "group_metrics.tsv").read_text().splitlines()
    assert rows[1].split("\t")[:4] == ["run", f"sub-01_task-rest_{MNI}", "sub-01", "n/a"]


def test_a_second_source_never_overwrites_the_targets(outputs, tmp_path, capsys):
    """fMRIPrep's func space has no space entity, like the raw BOLD: refused, OUT_DIR left untouched."""
    before = tree_hash(outputs["raw"])
    code = run_cli(outputs["bids"], outputs["raw"], outputs["work"], "--participant-label", "01",
                   "-d", f"fmriprep={outputs['fmriprep']}", "--bold-space", "func")
    assert code == 64
    err = capsys.readouterr().err
    assert "would replace it" in err and "bids:raw:sub-01/func/sub-01_task-rest_bold.nii.gz" in err
    assert "own OUT_DIR" in err
    assert tree_hash(outputs["raw"]) == before


_LONG = {"sub": "subject", "ses": "session", "task": "task", "acq": "acquisition", "run": "run",
         "space": "space", "res": "res", "desc": "desc"}


def _entities_from_name(path: Path, root: Path) -> dict:
    """An independent parse of a BIDS derivative name into PyBIDS entity names."""
    stem, _, ext = path.name.partition(".")
    *pairs, suffix = stem.split("_")
    ents = {_LONG[k]: v for k, v in (p.split("-", 1) for p in pairs)}
    ents.update(suffix=suffix, extension=f".{ext}")
    parent = path.relative_to(root).parts
    if len(parent) > 2 and parent[-2] in ("eeg", "func"):
        ents["datatype"] = parent[-2]
    return ents


def test_pybids_indexes_every_output_with_its_entities(outputs):
    from bids import BIDSLayout

    layout = BIDSLayout(outputs["bids"], derivatives=[outputs["raw"], outputs["fp"]])
    repr(layout)
    assert layout.get_sessions() == [] and layout.get_subjects() == ["01", "02"]
    for out, how in [(o, h) for o in (outputs["raw"], outputs["fp"])
                     for h in ({"validate": False}, {"is_derivative": True}, {"derivatives": True, "validate": False})]:
        derived = BIDSLayout(out, **how)
        text = repr(derived)  # raised TypeError while group_metrics.json had a "session" key
        assert "Subjects: 2" in text or "Subjects: 1" in text
        assert derived.get_sessions() == [] and isinstance(derived.get_sessions(), list)
        indexed = {Path(f.path): f for f in derived.get(return_type="object")}
        named = [p for p in out.rglob("sub-*_*") if p.is_file() and p.parent.name in ("eeg", "func")]
        assert len(named) >= 8
        for path in named:
            got = {k: str(v) for k, v in indexed[path].get_entities().items()}
            assert got == _entities_from_name(path, out), path.name
        # the table is indexed as a table: its columns are not entities of the dataset
        table = indexed[out / "group_metrics.tsv"]
        assert set(table.get_entities()) == {"suffix", "extension"}
        assert "participant_id" in table.get_metadata()
    fp = BIDSLayout(outputs["fp"], validate=False)
    assert fp.get_spaces() == ["MNI152NLin2009cAsym", "T1w"] and fp.get_res() == ["model"]
    preds = fp.get(desc="spec2vol", suffix="bold", extension=".nii.gz")
    assert [p.entities["space"] for p in preds] == ["MNI152NLin2009cAsym"]
    assert preds[0].get_metadata()["RepetitionTime"] == 2.0
