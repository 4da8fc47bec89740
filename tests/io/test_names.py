"""BIDS file names: entities, derivative paths, sidecar paths, BIDS URIs."""

from __future__ import annotations

from pathlib import Path

import pytest

from spec2vol_bids.io.names import (
    bids_uri,
    derivative_path,
    parse_entities,
    relative_derivative_path,
    run_entities,
    sidecar_path,
)


def test_parse_entities_keeps_spelling():
    ents = parse_entities("/x/sub-01/ses-A/eeg/sub-01_ses-A_task-rest_acq-hd_run-002_eeg.vhdr")
    assert ents == {"sub": "01", "ses": "A", "task": "rest", "acq": "hd", "run": "002"}
    assert parse_entities("sub-1_task-x_bold.nii.gz") == {"sub": "1", "task": "x"}


def test_bids_uri_is_relative_to_the_subject_folder():
    assert bids_uri("/mnt/data/ds/sub-01/eeg/sub-01_task-rest_eeg.vhdr") == \
        "bids:raw:sub-01/eeg/sub-01_task-rest_eeg.vhdr"
    assert bids_uri("/a/sub-01/ses-1/func/f.nii.gz") == "bids:raw:sub-01/ses-1/func/f.nii.gz"


def test_derivative_path_orders_entities():
    p = derivative_path("/out", {"run": "1", "task": "rest", "sub": "01", "ses": "A"}, desc="stft",
                        suffix="spectrogram", extension=".h5", datatype="eeg")
    assert str(p) == "/out/sub-01/ses-A/eeg/sub-01_ses-A_task-rest_run-1_desc-stft_spectrogram.h5"
    # every known entity in BIDS order; unknown keys after them, before the suffix
    p = derivative_path("/o", {"echo": "2", "foo": "bar", "acq": "hd", "sub": "x", "space": "T1w", "dir": "AP",
                               "rec": "m", "ce": "g", "res": "2"}, desc=None, suffix="bold", extension=".nii.gz",
                        datatype="func")
    assert p.name == "sub-x_acq-hd_ce-g_rec-m_dir-AP_echo-2_space-T1w_res-2_foo-bar_bold.nii.gz"
    with pytest.raises(ValueError):
        derivative_path("/out", {"sub": "01"}, desc="not-alnum", suffix="bold", extension=".nii.gz",
                        datatype="func")
    with pytest.raises(ValueError, match="sub"):
        derivative_path("/out", {"task": "x"}, desc="a", suffix="bold", extension=".nii.gz", datatype="func")


def test_run_entities_and_sidecar_path():
    assert run_entities("/d/sub-01_ses-2_task-r_run-3_space-MNI_desc-preproc_bold.nii.gz") == \
        {"sub": "01", "ses": "2", "task": "r", "run": "3"}
    assert sidecar_path("/d/x_desc-stft_spectrogram.h5") == Path("/d/x_desc-stft_spectrogram.json")
    assert sidecar_path("x_bold.nii.gz") == Path("x_bold.json")


def test_relative_derivative_path():
    assert relative_derivative_path("/w/node/sub-01/eeg/a.h5") == Path("sub-01/eeg/a.h5")
    assert relative_derivative_path("/w/sub-9/node/sub-01/ses-2/func/b.nii.gz") == Path("sub-01/ses-2/func/b.nii.gz")
    with pytest.raises(ValueError):
        relative_derivative_path("/w/node/a.h5")
