"""Discovery and pairing of EEG/BOLD runs, BIDS-App filters, BIDS URIs."""

from __future__ import annotations

import json
import logging
import shutil

import pytest

from spec2vol_bids.bids.layout import (
    bids_uri,
    collect_pairs,
    load_filter_file,
    parse_entities,
    strip_prefix,
)
from spec2vol_bids.errors import NoInputError, NoMatchError, UsageError

from ..cli.test_bidsapp import copy_dataset


def test_parse_entities_keeps_spelling():
    ents = parse_entities("/x/sub-01/ses-A/eeg/sub-01_ses-A_task-rest_acq-hd_run-002_eeg.vhdr")
    assert ents == {"sub": "01", "ses": "A", "task": "rest", "acq": "hd", "run": "002"}
    assert parse_entities("sub-1_task-x_bold.nii.gz") == {"sub": "1", "task": "x"}


def test_strip_prefix_splits_and_deduplicates():
    assert strip_prefix(["sub-01 sub-02", "03", "01"], "sub-") == ["01", "02", "03"]
    assert strip_prefix("sub-xp101", "sub-") == ["xp101"]
    assert strip_prefix(None, "sub-") is None
    assert strip_prefix([""], "sub-") is None


def test_bids_uri_is_relative_to_the_subject_folder():
    assert bids_uri("/mnt/data/ds/sub-01/eeg/sub-01_task-rest_eeg.vhdr") == \
        "bids:raw:sub-01/eeg/sub-01_task-rest_eeg.vhdr"
    assert bids_uri("/a/sub-01/ses-1/func/f.nii.gz") == "bids:raw:sub-01/ses-1/func/f.nii.gz"


def test_filter_file(tmp_path):
    from bids.layout import Query

    from spec2vol_bids.bids.layout import _to_query

    f = tmp_path / "filters.json"
    f.write_text(json.dumps({"bold": {"run": None, "task": "*", "session": "1"}}))
    spec = load_filter_file(f)
    q = _to_query(spec["bold"])
    assert q["run"] is Query.NONE and q["task"] is Query.ANY and q["session"] == "1"
    f.write_text("{not json")
    with pytest.raises(UsageError, match="not valid JSON"):
        load_filter_file(f)
    f.write_text(json.dumps({"t1w": {}}))
    with pytest.raises(UsageError, match="unknown query"):
        load_filter_file(f)
    with pytest.raises(NoInputError):
        load_filter_file(tmp_path / "missing.json")


@pytest.fixture(scope="module")
def two_subjects(tiny_bids, tmp_path_factory):
    """sub-01 and sub-02, plus a BOLD-only run (sub-02 run-2) and an EEG-only task (sub-01 task-other)."""
    root = copy_dataset(tiny_bids, tmp_path_factory.mktemp("layout") / "bids", subjects=("01", "02"))
    func = root / "sub-02" / "func"
    shutil.copy(func / "sub-02_task-rest_bold.nii.gz", func / "sub-02_task-rest_run-2_bold.nii.gz")
    shutil.copy(func / "sub-02_task-rest_bold.json", func / "sub-02_task-rest_run-2_bold.json")
    eeg = root / "sub-01" / "eeg"
    for ext in (".vhdr", ".json"):
        shutil.copy(eeg / f"sub-01_task-rest_eeg{ext}", eeg / f"sub-01_task-other_eeg{ext}")
    return root


def test_pairs_by_identical_entities_and_warns_about_unpaired(two_subjects, caplog):
    with caplog.at_level(logging.WARNING, logger="spec2vol_bids.bids"):
        pairs = collect_pairs(two_subjects)
    assert [p.name for p in pairs] == ["sub-01_task-rest", "sub-02_task-rest"]
    p = pairs[0]
    assert p.eeg_file.name == "sub-01_task-rest_eeg.vhdr" and p.bold_file.name == "sub-01_task-rest_bold.nii.gz"
    assert p.repetition_time == 2.0 and p.n_volumes == 72
    assert p.channels_tsv.name == "sub-01_task-rest_channels.tsv"
    assert p.events_tsv.name == "sub-01_task-rest_events.tsv"
    assert p.wf_name == "task_rest_wf"
    text = caplog.text
    assert "sub-02_task-rest_run-2_bold.nii.gz has no EEG run" in text
    assert "sub-01_task-other_eeg.vhdr has no BOLD run" in text


def test_filters_select_subjects_tasks_and_entities(two_subjects, tmp_path):
    assert [p.subject for p in collect_pairs(two_subjects, participant_label=["sub-02"])] == ["02"]
    assert len(collect_pairs(two_subjects, task_id=["rest"])) == 2
    with pytest.raises(NoMatchError, match="task"):
        collect_pairs(two_subjects, task_id=["nback"])
    with pytest.raises(NoMatchError, match="docker"):
        collect_pairs(two_subjects, participant_label=["07"])
    with pytest.raises(NoMatchError, match="session"):
        collect_pairs(two_subjects, session_label=["1"])
    # fMRIPrep-style filter: only subject 01's BOLD
    pairs = collect_pairs(two_subjects, bids_filters={"bold": {"subject": "01"}})
    assert [p.subject for p in pairs] == ["01"]
    with pytest.raises(NoMatchError):
        collect_pairs(two_subjects, bids_filters={"eeg": {"task": "other"}})


def test_missing_or_empty_dataset(tmp_path):
    with pytest.raises(NoInputError, match="does not exist"):
        collect_pairs(tmp_path / "nope")
    (tmp_path / "ds").mkdir()
    with pytest.raises(NoInputError, match="dataset_description"):
        collect_pairs(tmp_path / "ds")
    (tmp_path / "ds" / "dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.9.0"}')
    with pytest.raises(NoInputError, match="no subjects"):
        collect_pairs(tmp_path / "ds")


# ------------------------------------------------------------------------------------------------ -d/--derivatives
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
    from spec2vol_bids.bids.layout import parse_bold_space

    assert parse_bold_space("MNI152NLin2009cAsym") == ("MNI152NLin2009cAsym", {})
    assert parse_bold_space("MNI152NLin2009cAsym:res-2") == ("MNI152NLin2009cAsym", {"res": "2"})
    assert parse_bold_space("MNIPediatricAsym:cohort-1:res-native") == ("MNIPediatricAsym",
                                                                        {"cohort": "1", "res": "native"})
    assert parse_bold_space("func") == (None, {}) and parse_bold_space("native") == (None, {})
    for bad in ("", "MNI-152", "T1w:res2", "T1w:den-32k", "T1w:res-1:res-2", "func:res-2"):
        with pytest.raises(UsageError):
            parse_bold_space(bad)


def test_match_preproc_bold_picks_run_space_and_mask(two_subjects, tmp_path):
    from spec2vol_bids.bids.layout import match_preproc_bold

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
    from spec2vol_bids.bids.layout import match_preproc_bold
    from spec2vol_bids.errors import DataError

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
