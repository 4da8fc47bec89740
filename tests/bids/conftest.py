"""Fixtures of the BIDS reading tests."""

from __future__ import annotations

import shutil

import pytest

from ..cli.test_bidsapp import copy_dataset


@pytest.fixture(scope="package")
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
