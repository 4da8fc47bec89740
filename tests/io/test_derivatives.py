"""The derivatives: their declaration, the writers (sidecars, atomicity), dataset_description and .bidsignore."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from spec2vol_bids.io.dataset import write_bidsignore, write_dataset_description
from spec2vol_bids.io.derivatives import (
    DERIVATIVES,
    MASK,
    PREDICTION,
    SPECTROGRAM,
    TARGET,
    derivative_kind,
    resolution_description,
    run_derivatives,
    space_entities,
    xform_code,
)
from spec2vol_bids.io.nifti import write_nifti
from spec2vol_bids.io.spectrogram import load_spectrogram, write_spectrogram


def test_every_derivative_is_declared_once_with_its_names_and_metadata():
    assert set(DERIVATIVES) == {"spectrogram", "target", "mask", "prediction"}
    raw = "/raw/sub-01/ses-A/eeg/sub-01_ses-A_task-rest_run-1_eeg.vhdr"
    assert str(SPECTROGRAM.path("/out", raw)) == \
        "/out/sub-01/ses-A/eeg/sub-01_ses-A_task-rest_run-1_desc-stft_spectrogram.h5"
    # a preprocessed source file names the run (no desc); images keep its space unless told their own
    prep = "/d/sub-01/func/sub-01_task-rest_space-MNI152NLin2009cAsym_res-2_desc-preproc_bold.nii.gz"
    assert str(TARGET.path("/out", prep, space={})) == "/out/sub-01/func/sub-01_task-rest_desc-target_bold.nii.gz"
    assert TARGET.path("/out", prep).name == "sub-01_task-rest_space-MNI152NLin2009cAsym_res-2_desc-target_bold.nii.gz"
    assert SPECTROGRAM.path("/out", prep).name == "sub-01_task-rest_desc-stft_spectrogram.h5"  # EEG: no space
    assert MASK.path("/o", {"sub": "2", "task": "x"}).name == "sub-2_task-x_desc-brain_mask.nii.gz"
    pred = PREDICTION.path("/out", raw)
    assert PREDICTION.matches(pred) and derivative_kind(pred) is PREDICTION
    assert TARGET.sibling(pred) == TARGET.path("/out", raw)
    assert SPECTROGRAM.sibling(pred) == SPECTROGRAM.path("/out", raw)
    with pytest.raises(ValueError):
        derivative_kind("/out/sub-01/func/sub-01_task-rest_bold.nii.gz")
    # image derivatives carry what BIDS requires of them, after the step's own fields
    for image in (TARGET, PREDICTION):
        side = image.sidecar({"RepetitionTime": 2.0})
        assert list(side) == ["Description", "RepetitionTime", "SkullStripped"] and side["SkullStripped"] is False
    assert MASK.sidecar({"Sources": []}, description="d") == {"Description": "d", "Sources": [], "Type": "Brain"}


def test_run_derivatives_groups_files_by_run(tmp_path):
    files = [SPECTROGRAM.path(tmp_path, {"sub": "01", "task": t}) for t in ("a", "b")]
    files += [TARGET.path(tmp_path, {"sub": "01", "task": "a"}), tmp_path / "sub-01.html",
              PREDICTION.path(tmp_path, {"sub": "01", "task": "c"})]  # no spectrogram: not a run
    runs = run_derivatives(files)
    assert [sorted(r) for r in runs] == [["spectrogram", "target"], ["spectrogram"]]
    assert runs[0]["target"] == files[2]


def test_space_entities_follow_the_source_and_the_grid():
    mni = "sub-01_ses-1_task-rest_run-1_space-MNI152NLin2009cAsym_res-2_desc-preproc_bold.nii.gz"
    # the grid kept: the source's space and resolution; resampled to the model grid: res-model
    assert space_entities(mni, grid_changed=False) == {"space": "MNI152NLin2009cAsym", "res": "2"}
    assert space_entities(mni, grid_changed=True) == {"space": "MNI152NLin2009cAsym", "res": "model"}
    ped = "sub-01_task-rest_space-MNIPediatricAsym_cohort-1_desc-preproc_bold.nii.gz"
    assert space_entities(ped, grid_changed=True) == {"space": "MNIPediatricAsym", "cohort": "1", "res": "model"}
    # the BOLD run's own grid (raw BOLD, fMRIPrep's func outputs): no entity, even when resampled
    assert space_entities("sub-01_task-rest_bold.nii.gz", grid_changed=True) == {}
    assert space_entities("sub-01_task-rest_desc-preproc_bold.nii.gz", grid_changed=False) == {}
    # names in BIDS order: cohort after ses (BIDS schema), space and res before desc
    target = TARGET.path("/o", mni.replace("ses-1", "ses-1_cohort-x"), space=space_entities(ped, grid_changed=True))
    assert target.name == ("sub-01_ses-1_cohort-1_task-rest_run-1_space-MNIPediatricAsym_res-model"
                           "_desc-target_bold.nii.gz")
    # images of one run and space are siblings; the spectrogram is the run's, without space
    pred = PREDICTION.path("/o", target)
    assert pred.name == target.name.replace("desc-target", "desc-spec2vol")
    assert MASK.sibling(pred) == MASK.path("/o", target)
    assert SPECTROGRAM.sibling(pred).name == "sub-01_ses-1_task-rest_run-1_desc-stft_spectrogram.h5"
    # NIfTI xform codes as niworkflows writes them: scanner, MNI template, aligned
    assert xform_code({}) == 1
    assert xform_code({"space": "MNI152NLin2009cAsym"}) == 4
    assert xform_code({"space": "T1w"}) == 2
    text = resolution_description((64, 64, 30), (3.0, 3.5, 6.0), mni)
    assert "64 x 64 x 30 voxels of 3 x 3.5 x 6 mm" in text and mni in text


def test_run_derivatives_groups_each_space_with_the_run_spectrogram(tmp_path):
    run = {"sub": "01", "task": "a"}
    spec = SPECTROGRAM.path(tmp_path, run)
    mni = {"space": "MNI152NLin2009cAsym", "res": "model"}
    files = [spec, TARGET.path(tmp_path, run, space=mni), MASK.path(tmp_path, run, space=mni),
             TARGET.path(tmp_path, run, space={"space": "T1w"}), PREDICTION.path(tmp_path, run, space=mni)]
    runs = run_derivatives(files)
    assert len(runs) == 2 and all(r["spectrogram"] == spec for r in runs)
    by_target = {r["target"].name: r for r in runs}
    mni_run = by_target["sub-01_task-a_space-MNI152NLin2009cAsym_res-model_desc-target_bold.nii.gz"]
    assert set(mni_run) == {"spectrogram", "target", "mask", "prediction"}
    assert set(by_target["sub-01_task-a_space-T1w_desc-target_bold.nii.gz"]) == {"spectrogram", "target"}


def _spec_args(n_vol=10, n_ch=3, n_f=4):
    rng = np.random.default_rng(0)
    return dict(spectrogram=rng.standard_normal((n_vol, n_ch, n_f)), valid=np.ones(n_vol, bool),
                frequencies=np.arange(1, n_f + 1) / 2.0, volume_onsets=np.arange(n_vol) * 2.0 + 1.5,
                pair_windows=np.array([[0, 1], [1, 2]]), pair_targets=np.array([2, 3]),
                attrs={"channels": ["a", "b", "c"], "channel_types": ["EEG"] * 3, "sfreq": 250.0,
                       "repetition_time": 2.0, "window_length": 2.0, "taper": "boxcar", "units": "V",
                       "onset_source": "markers", "config": {"eeg": {"taper": "boxcar"}}})


def test_spectrogram_round_trip(tmp_path):
    args = _spec_args()
    h5, js = write_spectrogram(tmp_path / "x_desc-stft_spectrogram.h5", **args, sidecar={"Sources": ["bids:raw:a"]})
    back = load_spectrogram(h5)
    assert back.spectrogram.dtype == np.float32
    np.testing.assert_allclose(back.spectrogram, args["spectrogram"].astype(np.float32))
    np.testing.assert_array_equal(back.pair_windows, [[0, 1], [1, 2]])
    assert back.pair_windows.dtype == np.int32
    assert back.channels == ["a", "b", "c"] and back.config["eeg"]["taper"] == "boxcar"
    assert back.attrs["channels"] == ["a", "b", "c"] and back.repetition_time == 2.0 and back.n_pairs == 2
    np.testing.assert_array_equal(back.windows(), back.spectrogram[[[0, 1], [1, 2]]])
    head = load_spectrogram(h5, data=False)  # everything but the data
    assert head.spectrogram is None and head.shape == (10, 3, 4) and head.n_volumes == 10
    with pytest.raises(ValueError, match="without its data"):
        head.windows()
    side = json.loads(js.read_text())
    assert side["Sources"] == ["bids:raw:a"] and side["ChannelNames"] == ["a", "b", "c"]
    assert side["VolumeOnsets"][0] == 1.5 and side["NumberOfPairs"] == 2


def test_failed_write_leaves_nothing(tmp_path):
    args = _spec_args()
    args["attrs"]["bad"] = object()  # h5py cannot store it: the write fails half-way
    dest = tmp_path / "x_desc-stft_spectrogram.h5"
    with pytest.raises(TypeError):
        write_spectrogram(dest, **args)
    assert list(tmp_path.iterdir()) == []


def test_write_nifti_sets_tr_and_dtype(tmp_path):
    data = np.random.default_rng(0).random((4, 4, 2, 5))
    nii, js = write_nifti(tmp_path / "x_bold.nii.gz", data, np.diag([2, 2, 3, 1]), sidecar={"A": 1},
                          repetition_time=1.5)
    img = nib.load(nii)
    assert img.get_data_dtype() == np.float32 and img.header.get_zooms()[3] == pytest.approx(1.5)
    assert img.header.get_xyzt_units() == ("mm", "sec")
    assert json.loads(js.read_text()) == {"A": 1}


def test_dataset_description_and_bidsignore(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "dataset_description.json").write_text(json.dumps(
        {"Name": "Raw", "BIDSVersion": "1.9.0", "DatasetDOI": "10.18112/x", "License": "CC0"}))
    out = tmp_path / "out"
    write_dataset_description(out, bids_dir=raw, models=[{"Name": "ridge", "Description": "sha"}])
    write_dataset_description(out, bids_dir=raw)  # a later participant run keeps the model
    desc = json.loads((out / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative" and desc["License"] == "CC0"
    assert [g["Name"] for g in desc["GeneratedBy"]] == ["spec2vol-bids", "ridge"]
    assert desc["SourceDatasets"] == [{"DOI": "doi:10.18112/x"}]
    assert desc["DatasetLinks"]["raw"] == raw.resolve().as_uri()
    (out / ".bidsignore").write_text("custom\n")
    text = write_bidsignore(out).read_text().split()
    assert text[0] == "custom" and "*_spectrogram.h5" in text and len(text) == len(set(text))


def test_dataset_description_links_the_derivatives_used(tmp_path):
    raw, fmriprep = tmp_path / "raw", tmp_path / "fmriprep"
    raw.mkdir()
    (raw / "dataset_description.json").write_text(json.dumps({"Name": "Raw", "BIDSVersion": "1.9.0"}))
    out = tmp_path / "out"
    write_dataset_description(out, bids_dir=raw, derivatives={"fmriprep": fmriprep})
    write_dataset_description(out, bids_dir=raw)  # a later participant run without -d keeps the link
    desc = json.loads((out / "dataset_description.json").read_text())
    assert desc["DatasetLinks"] == {"raw": raw.resolve().as_uri(), "fmriprep": fmriprep.resolve().as_uri()}
    assert desc["SourceDatasets"] == [{"URL": raw.resolve().as_uri()}, {"URL": fmriprep.resolve().as_uri()}]


def test_dataset_description_of_another_pipeline_is_never_rewritten(tmp_path):
    from spec2vol_bids.errors import UsageError
    from spec2vol_bids.io.dataset import check_output_dataset, dataset_generator

    raw, out = tmp_path / "raw", tmp_path / "fmriprep"
    raw.mkdir()
    out.mkdir()
    (raw / "dataset_description.json").write_text(json.dumps({"Name": "Raw", "BIDSVersion": "1.9.0"}))
    text = json.dumps({"Name": "fMRIPrep", "BIDSVersion": "1.4.0", "DatasetType": "derivative",
                       "GeneratedBy": [{"Name": "fMRIPrep"}], "Authors": ["A"]})
    (out / "dataset_description.json").write_text(text)
    assert dataset_generator(out) == (True, "fMRIPrep")
    with pytest.raises(UsageError, match="made by fMRIPrep"):
        check_output_dataset(out)
    with pytest.raises(UsageError, match="not rewritten"):
        write_dataset_description(out, bids_dir=raw)
    assert (out / "dataset_description.json").read_text() == text
    ours = tmp_path / "ours"
    write_dataset_description(ours, bids_dir=raw)
    assert dataset_generator(ours) == (True, "spec2vol-bids")
    check_output_dataset(ours)  # accepted
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / ".DS_Store").write_text("")
    check_output_dataset(tmp_path / "empty")  # hidden files do not count
    check_output_dataset(tmp_path / "missing")
