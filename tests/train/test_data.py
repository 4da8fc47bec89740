"""Discovery, lazy reading, scaling statistics (no leakage) and the official h5 reader."""

from __future__ import annotations

import h5py
import nibabel as nib
import numpy as np
import pytest

from spec2vol_bids.errors import DataError, NoInputError, UsageError
from spec2vol_bids.io.spectrogram import load_spectrogram
from spec2vol_bids.train import data as D
from spec2vol_bids.train import runs as R

from .conftest import make_derivatives, write_run


def test_discover_and_read_samples_match_files(fake_derivs, tmp_path):
    runs = D.discover_runs(fake_derivs, cache_dir=tmp_path / "cache")
    assert [r.subject for r in runs] == ["01", "02", "03", "04"]
    run = runs[1]
    assert run.mask_path is not None and run.n_windows == 4 and run.grid_shape == (64, 64, 2)
    content = load_spectrogram(run.spectrogram)
    spec, windows, targets = content.spectrogram, content.pair_windows, content.pair_targets
    vol = np.asarray(nib.load(run.target).dataobj)  # [X, Y, Z, T]
    ds = D.PairDataset(runs)
    k = 5
    x, y = ds[runs[0].n_pairs + k]  # item k of the second run
    np.testing.assert_array_equal(x.numpy(), spec[windows[k]])
    np.testing.assert_array_equal(y.numpy(), vol[..., targets[k]].transpose(2, 0, 1))
    # the target was cached once as an uncompressed [T, Z, X, Y] .npy and is memory-mapped
    cache = list((tmp_path / "cache").glob("*.npy"))
    assert len(cache) == 1
    arr = run.target_array()
    assert isinstance(arr, np.memmap) and arr.shape == (40, 2, 64, 64)
    # the spectrogram is opened lazily: an unused run has no handle
    assert runs[3]._rows._h5._file is None
    assert ds.sample_shapes == ((4, 6, 12), (2, 64, 64))
    assert [list(r) for _, r in ds.run_slices()][1][0] == runs[0].n_pairs


def test_refusals(tmp_path):
    with pytest.raises(NoInputError, match="does not exist"):
        D.discover_runs(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(NoInputError, match="no \\*_desc-stft_spectrogram.h5"):
        D.discover_runs(tmp_path / "empty")
    # mismatched channels across subjects
    root = make_derivatives(tmp_path / "d", subjects=("01",))
    write_run(root, "02", channels=[f"E{i:02d}" for i in range(5)] + ["ECG"])
    with pytest.raises(DataError, match=r"sub-02.*6 channels.*missing \['E05'\], extra \['ECG'\]"):
        D.discover_runs(root)
    # mismatched frequency axis
    root2 = make_derivatives(tmp_path / "d2", subjects=("01",))
    write_run(root2, "02", frequencies=np.arange(1, 13) / 1.5)
    with pytest.raises(DataError, match="different frequency axes"):
        D.discover_runs(root2)
    # a spectrogram without its target
    root3 = make_derivatives(tmp_path / "d3", subjects=("01",))
    next(root3.rglob("*_desc-target_bold.nii.gz")).unlink()
    with pytest.raises(NoInputError, match="has no matching"):
        D.discover_runs(root3)


def test_scaling_reads_training_subjects_only(fake_derivs, monkeypatch):
    runs = D.discover_runs(fake_derivs)
    read = []
    real = R.load_spectrogram
    monkeypatch.setattr(R, "load_spectrogram", lambda p, **kw: read.append(str(p)) or real(p, **kw))
    sc = D.compute_scaling(runs, "train-minmax", train_subjects=["01", "03"])
    assert sorted(p.split("/")[-1][:6] for p in read) == ["sub-01", "sub-03"]
    assert sc["subjects"] == ["01", "03"]
    # oracle: min/max over the rows used by the pairs of those subjects
    vals = [real(r.spectrogram).spectrogram[np.unique(r.windows)] for r in runs if r.subject in ("01", "03")]
    assert sc["min"] == pytest.approx(min(v.min() for v in vals))
    assert sc["max"] == pytest.approx(max(v.max() for v in vals))
    read.clear()
    leaky = D.compute_scaling(runs, "global-leaky")
    assert len(read) == 4 and leaky["subjects"] == ["01", "02", "03", "04"]
    x = np.array([sc["min"], sc["max"]])
    np.testing.assert_allclose(D.apply_scaling(x, sc), [0.0, 1.0])
    assert D.compute_scaling(runs, "none")["method"] == "none"
    with pytest.raises(UsageError):
        D.compute_scaling(runs, "zscore")


def test_official_h5_reader(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for s in ("sub-32", "sub-35"):
        p = tmp_path / f"{s}.h5"
        with h5py.File(p, "w") as f:
            f["eeg"] = rng.random((7, 20, 5, 249)).astype(np.float32)
            f["fmri"] = rng.random((7, 3, 64, 64)).astype(np.float32)
        paths.append(p)
    runs = D.load_official_h5(paths)
    assert [r.subject for r in runs] == ["32", "35"] and runs[0].grid_shape == (64, 64, 3)
    ds = D.PairDataset(runs)
    x, y = ds[9]
    with h5py.File(paths[1]) as f:
        np.testing.assert_array_equal(x.numpy(), f["eeg"][2])
        np.testing.assert_array_equal(y.numpy(), f["fmri"][2])
    assert ds.sample_shapes == ((20, 5, 249), (3, 64, 64))
    bad = tmp_path / "bad.h5"
    with h5py.File(bad, "w") as f:
        f["eeg"] = np.zeros((7, 20, 6, 249), np.float32)
        f["fmri"] = np.zeros((7, 3, 64, 64), np.float32)
    with pytest.raises(DataError, match="channels"):
        D.load_official_h5([paths[0], bad])
    with pytest.raises(NoInputError):
        D.load_official_h5([tmp_path / "nope.h5"])


def test_discovery_ignores_work_directories(fake_derivs):
    import shutil

    spec = next(fake_derivs.rglob("sub-01_*_desc-stft_spectrogram.h5"))
    node = fake_derivs / "work" / "spec2vol_wf" / "_subject_01" / "sink"
    node.mkdir(parents=True)
    shutil.copy(spec, node / spec.name)  # a nipype node's copy must not become a second run
    assert [r.subject for r in D.discover_runs(fake_derivs)] == ["01", "02", "03", "04"]
