"""Preprocessed EEG from a derivatives dataset (-d NAME=PATH, --eeg-desc): matching, companions, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spec2vol_bids.bids.eegprep import check_eeg_desc, dataset_holds, match_preproc_eeg
from spec2vol_bids.bids.runs import RunPair
from spec2vol_bids.errors import NoInputError, UsageError


def _dataset(root: Path, files, *, kind="derivative") -> Path:
    root.mkdir(parents=True)
    (root / "dataset_description.json").write_text(json.dumps({
        "Name": "eegprep", "BIDSVersion": "1.10.0", "DatasetType": kind, "GeneratedBy": [{"Name": "x"}]}))
    for rel in files:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("x")
    return root


def _pair(tmp_path, sub="01", run=None):
    ents = {"sub": sub, "task": "rest", **({"run": run} if run else {})}
    stem = "_".join(f"{k}-{v}" for k, v in ents.items())
    raw = tmp_path / "raw" / f"sub-{sub}" / "eeg"
    return RunPair(entities=ents, eeg_file=raw / f"{stem}_eeg.vhdr", bold_file=tmp_path / "b.nii.gz",
                   repetition_time=2.0, n_volumes=10, channels_tsv=raw / f"{stem}_channels.tsv",
                   events_tsv=raw / f"{stem}_events.tsv")


def test_match_takes_the_desc_file_with_its_companions(tmp_path):
    prep = _dataset(tmp_path / "eegprep", [
        "sub-01/eeg/sub-01_task-rest_desc-preproc_eeg.vhdr",
        "sub-01/eeg/sub-01_task-rest_desc-preproc_eeg.edf",  # BrainVision is preferred
        "sub-01/eeg/sub-01_task-rest_desc-preproc_channels.tsv",
        "sub-01/eeg/sub-01_task-rest_desc-raw_eeg.vhdr",  # another desc: not taken
        "sub-02/ses-1/eeg/sub-02_ses-1_task-rest_run-01_desc-preproc_eeg.set",
        "sub-02/ses-1/eeg/sub-02_ses-1_task-rest_run-01_events.tsv",
    ])
    first = _pair(tmp_path)
    out = match_preproc_eeg([first], {"eegprep": prep})
    p = out[0].eeg_preproc
    assert p.file == prep / "sub-01/eeg/sub-01_task-rest_desc-preproc_eeg.vhdr" and p.desc == "preproc"
    assert p.channels_tsv == prep / "sub-01/eeg/sub-01_task-rest_desc-preproc_channels.tsv"
    assert p.events_tsv == first.events_tsv  # none beside it: the raw run's (same time zero assumed, logged)
    assert p.uri() == "bids:eegprep:sub-01/eeg/sub-01_task-rest_desc-preproc_eeg.vhdr"
    assert out[0].source_eeg == p.file and out[0].eeg_dataset == "eegprep"
    assert out[0].source_channels_tsv == p.channels_tsv and out[0].eeg_source()["desc"] == "preproc"
    assert first.source_eeg == first.eeg_file and first.eeg_dataset == "raw"  # the input pair is unchanged
    # sessions and run numbers written differently (run-1 vs run-01) still match; its own events.tsv is used
    second = RunPair(entities={"sub": "02", "ses": "1", "task": "rest", "run": "1"},
                     eeg_file=tmp_path / "x_eeg.vhdr", bold_file=tmp_path / "b.nii.gz", repetition_time=2.0,
                     n_volumes=10)
    p2 = match_preproc_eeg([second], {"eegprep": prep})[0].eeg_preproc
    assert p2.file.name == "sub-02_ses-1_task-rest_run-01_desc-preproc_eeg.set"
    assert p2.events_tsv.name == "sub-02_ses-1_task-rest_run-01_events.tsv" and p2.channels_tsv is None
    # another desc label
    raw_desc = match_preproc_eeg([first], {"eegprep": prep}, desc="desc-raw")[0].eeg_preproc
    assert raw_desc.file.name == "sub-01_task-rest_desc-raw_eeg.vhdr" and raw_desc.desc == "raw"


def test_datasets_are_searched_in_order_and_a_missing_run_is_an_error(tmp_path):
    a = _dataset(tmp_path / "a", ["sub-02/eeg/sub-02_task-rest_desc-preproc_eeg.vhdr"])
    b = _dataset(tmp_path / "b", ["sub-01/eeg/sub-01_task-rest_desc-clean_eeg.vhdr",
                                  "sub-02/eeg/sub-02_task-rest_desc-preproc_eeg.vhdr"])
    pairs = [_pair(tmp_path, "01"), _pair(tmp_path, "02")]
    with pytest.raises(NoInputError) as err:
        match_preproc_eeg(pairs, {"a": a, "b": b})
    msg = err.value.one_line()
    assert "no preprocessed EEG of sub-01_task-rest (desc-preproc" in msg and "it has desc clean" in msg
    assert "--eeg-desc" in msg and str(a) in msg and str(b) in msg
    found = match_preproc_eeg(pairs[1:], {"a": a, "b": b})
    assert found[0].eeg_preproc.dataset == "a"  # the first dataset with a match
    with pytest.raises(UsageError, match="invalid derivatives name"):
        match_preproc_eeg(pairs, {"raw": a})
    with pytest.raises(UsageError, match="not a derivatives dataset"):
        match_preproc_eeg(pairs, {"x": _dataset(tmp_path / "r", [], kind="raw")})
    assert match_preproc_eeg([], {"a": a}) == []


def test_eeg_desc_labels_and_dataset_contents(tmp_path):
    assert check_eeg_desc("preproc") == "preproc" and check_eeg_desc("desc-clean") == "clean"
    for bad in ("", "pre_proc", "a-b", "desc-"):
        with pytest.raises(UsageError, match="--eeg-desc"):
            check_eeg_desc(bad)
    fmriprep = _dataset(tmp_path / "f", ["sub-01/func/sub-01_task-rest_space-T1w_desc-preproc_bold.nii.gz"])
    eeg = _dataset(tmp_path / "e", ["sub-01/ses-1/eeg/sub-01_ses-1_task-rest_desc-x_eeg.bdf"])
    both = _dataset(tmp_path / "b", ["sub-01/func/sub-01_task-rest_desc-preproc_bold.nii",
                                     "sub-01/eeg/sub-01_task-rest_desc-x_eeg.set"])
    none = _dataset(tmp_path / "n", ["sub-01/func/sub-01_task-rest_desc-noisefree_bold.nii.gz",
                                     "sub-01/eeg/sub-01_task-rest_desc-x_channels.tsv"])
    assert dataset_holds(fmriprep) == {"bold": True, "eeg": False}
    assert dataset_holds(eeg) == {"bold": False, "eeg": True}
    assert dataset_holds(both) == {"bold": True, "eeg": True}
    assert dataset_holds(none) == {"bold": False, "eeg": False}
