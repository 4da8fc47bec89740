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
