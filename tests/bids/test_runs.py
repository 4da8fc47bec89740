"""Discovery and pairing of EEG/BOLD runs, with the BIDS-App filters."""

from __future__ import annotations

import logging

import pytest

from spec2vol_bids.bids.runs import collect_pairs
from spec2vol_bids.errors import NoInputError, NoMatchError


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
