"""Preprocessed BOLD from a derivatives dataset (-d NAME=PATH, --bold-space)."""

from __future__ import annotations

import json

import pytest

from spec2vol_bids.bids.fmriprep import match_preproc_bold, parse_bold_space
from spec2vol_bids.bids.runs import collect_pairs
from spec2vol_bids.errors import DataError, NoInputError, UsageError


def _deriv_dataset(root, files, *, description=None):
    """A derivatives dataset of small 4-D images: ``files`` maps a relative path to its number of volumes (or
    ``None`` for a 3-D mask)."""
    import nibabel as nib
    import numpy as np

    root.mkdir(parents=True)
    (root / "dataset_description.json").write_text(json.dumps(description or {
        "Name": "fMRIPrep", "BIDSVersion": "1.9.0", "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "fMRIPrep"}]}))
    for rel, n_vol in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        shape = (4, 4, 3) if n_vol is None else (4, 4, 3, n_vol)
        img = nib.Nifti1Image(np.ones(shape, dtype=np.uint8 if n_vol is None else np.float32), np.eye(4))
        if n_vol is not None:
            img.header.set_zooms((1.0, 1.0, 1.0, 2.0))
        nib.save(img, path)
    return root


def test_parse_bold_space():
    assert parse_bold_space("MNI152NLin2009cAsym") == ("MNI152NLin2009cAsym", {})
    assert parse_bold_space("MNI152NLin2009cAsym:res-2") == ("MNI152NLin2009cAsym", {"res": "2"})
    assert parse_bold_space("MNIPediatricAsym:cohort-1:res-native") == ("MNIPediatricAsym",
                                                                        {"cohort": "1", "res": "native"})
    assert parse_bold_space("func") == (None, {}) and parse_bold_space("native") == (None, {})
    for bad in ("", "MNI-152", "T1w:res2", "T1w:den-32k", "T1w:res-1:res-2", "func:res-2"):
        with pytest.raises(UsageError):
            parse_bold_space(bad)


def test_match_preproc_bold_picks_run_space_and_mask(two_subjects, tmp_path):

    f1, f2 = "sub-01/func/sub-01_task-rest", "sub-02/func/sub-02_task-rest"
    deriv = _deriv_dataset(tmp_path / "fmriprep", {
        f"{f1}_space-MNI152NLin2009cAsym_desc-preproc_bold.nii.gz": 72,
        f"{f1}_space-MNI152NLin2009cAsym_desc-brain_mask.nii.gz": None,
        f"{f1}_space-T1w_desc-preproc_bold.nii.gz": 72,
        f"{f1}_desc-preproc_bold.nii.gz": 72,  # fMRIPrep's func space: no space entity
        f"{f2}_space-MNI152NLin2009cAsym_res-1_desc-preproc_bold.nii.gz": 72,
        f"{f2}_space-MNI152NLin2009cAsym_res-2_desc-preproc_bold.nii.gz": 72,
        "sub-01/func/sub-01_task-other_space-MNI152NLin2009cAsym_desc-preproc_bold.nii.gz": 72,
    })
    (deriv / f"{f1}_space-MNI152NLin2009cAsym_desc-preproc_bold.json").write_text('{"RepetitionTime": 2.0}')
    pairs = collect_pairs(two_subjects)
    one = match_preproc_bold(pairs[:1], {"fmriprep": deriv})[0]
    assert one.preproc.file.name == "sub-01_task-rest_space-MNI152NLin2009cAsym_desc-preproc_bold.nii.gz"
    assert one.preproc.mask.name == "sub-01_task-rest_space-MNI152NLin2009cAsym_desc-brain_mask.nii.gz"
    assert one.preproc.dataset == "fmriprep" and one.preproc.space == "MNI152NLin2009cAsym"
    assert one.preproc.repetition_time == 2.0 and one.target_bold == one.preproc.file
    assert one.bold_file == pairs[0].bold_file and pairs[0].preproc is None  # the raw pair is unchanged
    assert one.preproc.uri() == f"bids:fmriprep:{f1}_space-MNI152NLin2009cAsym_desc-preproc_bold.nii.gz"
    assert one.to_dict()["preproc"]["mask"] == str(one.preproc.mask)
    t1w = match_preproc_bold(pairs[:1], {"fmriprep": deriv}, space="T1w")[0]
    assert "space-T1w" in t1w.preproc.file.name and t1w.preproc.mask is None
    native = match_preproc_bold(pairs[:1], {"fmriprep": deriv}, space="func")[0]
    assert native.preproc.file.name == "sub-01_task-rest_desc-preproc_bold.nii.gz"
    # two resolutions of one space: ambiguous unless --bold-space names one
    with pytest.raises(UsageError, match="res-1"):
        match_preproc_bold(pairs, {"fmriprep": deriv})
    res2 = match_preproc_bold(pairs[1:], {"fmriprep": deriv}, space="MNI152NLin2009cAsym:res-2")[0]
    assert "_res-2_" in res2.preproc.file.name
    # several datasets are searched in the order given; the first with the run wins
    other = _deriv_dataset(tmp_path / "other", {f"{f2}_space-T1w_desc-preproc_bold.nii.gz": 72})
    both = match_preproc_bold(pairs, {"other": other, "fmriprep": deriv}, space="T1w")
    assert [p.preproc.dataset for p in both] == ["fmriprep", "other"]


def test_match_preproc_bold_errors(two_subjects, tmp_path):

    pairs = collect_pairs(two_subjects, participant_label=["01"])
    stem = "sub-01/func/sub-01_task-rest_space-MNI152NLin2009cAsym"
    with pytest.raises(NoInputError, match="does not exist"):
        match_preproc_bold(pairs, {"fmriprep": tmp_path / "missing"})
    with pytest.raises(UsageError, match="not a derivatives dataset"):
        match_preproc_bold(pairs, {"fmriprep": two_subjects})
    with pytest.raises(UsageError, match="invalid derivatives name"):
        match_preproc_bold(pairs, {"raw": two_subjects})
    empty = _deriv_dataset(tmp_path / "empty", {"sub-02/func/x_desc-preproc_bold.nii.gz": 72})
    with pytest.raises(NoInputError, match=r"no preprocessed BOLD of sub-01_task-rest \(space-MNI152NLin2009cAsym"):
        match_preproc_bold(pairs, {"fmriprep": empty})
    short = _deriv_dataset(tmp_path / "short", {f"{stem}_desc-preproc_bold.nii.gz": 60})
    with pytest.raises(DataError, match="has 60 volumes but the raw run"):
        match_preproc_bold(pairs, {"fmriprep": short})
    slow = _deriv_dataset(tmp_path / "slow", {f"{stem}_desc-preproc_bold.nii.gz": 72})
    (slow / f"{stem}_desc-preproc_bold.json").write_text('{"RepetitionTime": 3.0}')
    with pytest.raises(DataError, match="TR of 3 s"):
        match_preproc_bold(pairs, {"fmriprep": slow})
    bad_mask = _deriv_dataset(tmp_path / "mask", {f"{stem}_desc-preproc_bold.nii.gz": 72,
                                                  f"{stem}_desc-brain_mask.nii.gz": 2})
    with pytest.raises(DataError, match="brain mask"):
        match_preproc_bold(pairs, {"fmriprep": bad_mask})
