"""Tests of napari_spec2vol._reader: layers, shapes, scale and metadata for every file kind."""

from __future__ import annotations

import json

import h5py
import nibabel as nib
import numpy as np
import pytest

from napari_spec2vol._reader import napari_get_reader, read_paths
from spec2vol_bids.errors import DataError, NoInputError


def _bold(tmp_path, name, shape=(6, 5, 4, 7), affine=None, sidecar=None, tr=2.0):
    rng = np.random.default_rng(0)
    data = rng.random(shape, dtype=np.float32)
    if affine is None:
        # LPS-like: x flipped, anisotropic voxels 3 x 2 x 4 mm
        affine = np.diag([-3.0, 2.0, 4.0, 1.0])
        affine[:3, 3] = [10.0, -20.0, -30.0]
    img = nib.Nifti1Image(data, affine)
    img.header.set_xyzt_units("mm", "sec")
    if len(shape) == 4:
        img.header["pixdim"][4] = tr
    path = tmp_path / name
    nib.save(img, path)
    if sidecar is not None:
        (tmp_path / name.replace(".nii.gz", ".json")).write_text(json.dumps(sidecar))
    return path, data, affine


def test_reader_claims_only_what_it_reads(tmp_path):
    """By content: a spectrogram derivative (any name), a 4-D NIfTI, the 3-D images of a spec2vol-bids dataset and
    BIDS EEG recordings; other .h5, 3-D NIfTI, non-BIDS EEG files and broken files go to other plugins."""
    import h5py
    import mne

    assert napari_get_reader("image.png") is None
    # spectrogram derivative by its datasets, whatever its name; other HDF5 files are not claimed
    spec, *_ = _spectrogram(tmp_path)
    renamed = tmp_path / "any-name.h5"
    renamed.write_bytes(spec.read_bytes())
    assert callable(napari_get_reader(str(spec))) and callable(napari_get_reader(str(renamed)))
    other = tmp_path / "sub-01_task-rest_desc-stft_spectrogram2.h5"
    with h5py.File(other, "w") as h5:
        h5["spectrogram"] = np.zeros((3, 4))  # 2-D, no pairs: not ours
    assert napari_get_reader(str(other)) is None
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    assert napari_get_reader(str(tmp_path / "junk.h5")) is None
    # NIfTI: a 4-D series is claimed, a 3-D image only inside a spec2vol-bids derivatives dataset
    bold, *_ = _bold(tmp_path, "sub-01_task-rest_bold.nii.gz")
    anat, *_ = _bold(tmp_path, "sub-01_T1w.nii.gz", shape=(6, 5, 4))
    assert callable(napari_get_reader(str(bold))) and napari_get_reader(str(anat)) is None
    assert napari_get_reader([str(bold), str(anat)]) is None  # a stack is claimed only as a whole
    deriv = tmp_path / "deriv"
    (deriv / "sub-01" / "func").mkdir(parents=True)
    from spec2vol_bids.io.dataset import write_dataset_description

    write_dataset_description(deriv, bids_dir=tmp_path)
    mask, *_ = _bold(deriv / "sub-01" / "func", "sub-01_task-rest_desc-brain_mask.nii.gz", shape=(6, 5, 4))
    assert callable(napari_get_reader(str(mask)))
    (tmp_path / "broken.nii.gz").write_bytes(b"not a nifti")
    assert napari_get_reader(str(tmp_path / "broken.nii.gz")) is None
    # EEG: BIDS recordings (*_eeg.<ext>) only
    raw, _ = _raw()
    for name in ("sub-01_task-rest_eeg.edf", "recording.edf"):
        mne.export.export_raw(tmp_path / name, raw, fmt="edf", verbose="error")
    assert callable(napari_get_reader(str(tmp_path / "sub-01_task-rest_eeg.edf")))
    assert napari_get_reader(str(tmp_path / "recording.edf")) is None
    assert napari_get_reader(str(tmp_path / "missing_eeg.vhdr")) is None


def test_target_bold_canonical_orientation_scale_and_metadata(tmp_path):
    sidecar = {"RepetitionTime": 1.5, "TaskName": "rest", "Scaling": "minmax"}
    path, data, affine = _bold(tmp_path, "sub-01_task-rest_desc-target_bold.nii.gz", sidecar=sidecar)
    (layer_data, kwargs, layer_type), = napari_get_reader(str(path))(str(path))
    assert layer_type == "image"
    # (x, y, z, t) = (6, 5, 4, 7) -> (t, z, y, x)
    assert layer_data.shape == (7, 4, 5, 6)
    assert kwargs["scale"] == [1.5, 4.0, 2.0, 3.0]  # TR from the sidecar wins over pixdim[4] = 2
    # canonical: x axis flipped, so napari's last axis runs the other way and the origin moves
    expected = data[::-1].transpose(3, 2, 1, 0)
    np.testing.assert_array_equal(layer_data, expected)
    canon = np.array(kwargs["metadata"]["affine"])
    assert canon[0, 0] == 3.0
    assert kwargs["translate"][1:] == [canon[2, 3], canon[1, 3], canon[0, 3]]
    assert kwargs["translate"][0] == 0.0
    assert np.allclose(kwargs["metadata"]["native_affine"], affine)
    assert kwargs["metadata"]["kind"] == "bold-target"
    assert kwargs["metadata"]["sidecar"]["TaskName"] == "rest"
    assert kwargs["metadata"]["repetition_time"] == 1.5
    assert kwargs["units"] == ("s", "mm", "mm", "mm")
    lo, hi = kwargs["contrast_limits"]
    assert 0.0 <= lo < hi <= 1.0
    # world coordinate of voxel (i, j, k) equals the NIfTI affine applied to it
    z, y, x = 1, 2, 3  # napari index (any time point)
    world = np.array(kwargs["translate"][1:]) + np.array(kwargs["scale"][1:]) * [z, y, x]
    ras = canon @ np.array([x, y, z, 1.0])
    np.testing.assert_allclose(world, ras[2::-1])


def test_tr_from_header_when_no_sidecar(tmp_path):
    path, *_ = _bold(tmp_path, "sub-01_task-rest_bold.nii.gz", tr=2.5)
    (_, kwargs, _), = read_paths(path)
    assert kwargs["scale"][0] == 2.5
    assert kwargs["metadata"]["kind"] == "image"


def test_predicted_bold_translated_to_its_volume_indices(tmp_path):
    sidecar = {"RepetitionTime": 2.0, "VolumeIndices": [26, 27, 28, 29, 30, 31, 32], "ModelName": "tiny"}
    path, *_ = _bold(tmp_path, "sub-01_task-rest_desc-spec2vol_bold.nii.gz", sidecar=sidecar)
    (data, kwargs, _), = read_paths(path)
    assert data.shape[0] == 7
    assert kwargs["translate"][0] == 52.0  # first predicted volume at 26 * TR
    assert kwargs["metadata"]["volume_indices"][0] == 26
    assert kwargs["metadata"]["kind"] == "bold-predicted"


def test_predicted_bold_with_mismatched_sidecar_is_a_data_error(tmp_path):
    sidecar = {"RepetitionTime": 2.0, "VolumeIndices": [1, 2]}
    path, *_ = _bold(tmp_path, "sub-01_task-rest_desc-spec2vol_bold.nii.gz", sidecar=sidecar)
    with pytest.raises(DataError, match="VolumeIndices"):
        read_paths(path)


def test_mask_is_a_labels_layer(tmp_path):
    mask = np.zeros((6, 5, 4), np.uint8)
    mask[1:4, 1:4, 1:3] = 1
    path = tmp_path / "sub-01_task-rest_desc-brain_mask.nii.gz"
    nib.save(nib.Nifti1Image(mask, np.diag([2.0, 2.0, 3.0, 1.0])), path)
    (data, kwargs, layer_type), = read_paths(path)
    assert layer_type == "labels"
    assert data.shape == (4, 5, 6)
    assert kwargs["scale"] == [3.0, 2.0, 2.0]
    assert int(data.sum()) == int(mask.sum())


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(NoInputError):
        read_paths(tmp_path / "nothere_bold.nii.gz")
    bad = tmp_path / "bad_bold.nii.gz"
    bad.write_bytes(b"not a nifti")
    with pytest.raises(DataError):
        read_paths(bad)
    bad_h5 = tmp_path / "x_desc-stft_spectrogram.h5"
    bad_h5.write_bytes(b"junk")
    with pytest.raises(DataError):
        read_paths(bad_h5)


def _spectrogram(tmp_path, n_vol=30, n_ch=4, n_f=9):
    rng = np.random.default_rng(1)
    spec = rng.random((n_vol, n_ch, n_f), dtype=np.float32)
    valid = np.ones(n_vol, bool)
    valid[-1] = False
    spec[-1] = 0
    freqs = np.linspace(1.0, 5.0, n_f)
    path = tmp_path / "sub-01_task-rest_desc-stft_spectrogram.h5"
    with h5py.File(path, "w") as f:
        f["spectrogram"] = spec
        f["valid"] = valid
        f["frequencies"] = freqs
        f["volume_onsets"] = np.arange(n_vol) * 2.0 + 0.5
        f["pairs/windows"] = (np.arange(3)[:, None] + np.arange(20)[None]).astype(np.int32) + 6
        f["pairs/targets"] = np.arange(3, dtype=np.int32) + 26
        f.attrs["channels"] = json.dumps([f"E{i}" for i in range(n_ch)])
        f.attrs["channel_types"] = json.dumps(["EEG"] * n_ch)
        f.attrs["sfreq"] = 250.0
        f.attrs["repetition_time"] = 2.0
        f.attrs["window_length"] = 2.0
        f.attrs["onset_source"] = "markers"
        f.attrs["config"] = json.dumps({"eeg": {"fmax": 5}})
    return path, spec, freqs


def test_spectrogram_layer(tmp_path):
    path, spec, freqs = _spectrogram(tmp_path)
    (data, kwargs, layer_type), = napari_get_reader(str(path))(str(path))
    assert layer_type == "image"
    np.testing.assert_array_equal(data, spec)
    assert kwargs["scale"] == [2.0, 1.0, 0.5]
    assert kwargs["translate"] == [0.0, 0.0, 1.0]
    meta = kwargs["metadata"]
    assert meta["channels"] == ["E0", "E1", "E2", "E3"]
    assert meta["config"] == {"eeg": {"fmax": 5}}
    assert meta["onset_source"] == "markers"
    assert meta["pairs_windows"].shape == (3, 20)
    assert meta["pairs_targets"].tolist() == [26, 27, 28]
    assert not meta["valid"][-1]
    np.testing.assert_allclose(meta["frequencies"], freqs)
    # the invalid all-zero row does not drag the contrast limits down to 0
    assert kwargs["contrast_limits"][0] > 0.0


def _raw(n_ch=3, sfreq=100.0, seconds=12.0, markers=True):
    import mne

    rng = np.random.default_rng(2)
    n = int(sfreq * seconds)
    data = rng.standard_normal((n_ch, n)) * 1e-5
    data[0] *= 50  # a large channel: z-scoring puts it on the same scale
    info = mne.create_info([f"Fp{i}" for i in range(n_ch)], sfreq, "eeg")
    raw = mne.io.RawArray(data, info, verbose="error")
    if markers:
        onsets = 1.0 + 2.0 * np.arange(5)
        raw.set_annotations(mne.Annotations(onsets, [0.0] * 5, ["Response/R128"] * 5))
    return raw, data


@pytest.mark.parametrize("fmt,ext", [("brainvision", "vhdr"), ("edf", "edf"), ("eeglab", "set")])
def test_eeg_layers(tmp_path, fmt, ext):
    import mne

    raw, data = _raw()
    path = tmp_path / f"sub-01_task-rest_eeg.{ext}"
    mne.export.export_raw(path, raw, fmt=fmt, verbose="error")
    layers = napari_get_reader(str(path))(str(path))
    (image, kwargs, layer_type) = layers[0]
    assert layer_type == "image"
    assert image.shape == data.shape
    assert kwargs["scale"] == [1.0, 1.0 / 100.0]
    meta = kwargs["metadata"]
    assert meta["channels"] == ["Fp0", "Fp1", "Fp2"]
    assert meta["sfreq"] == 100.0
    # robust z-score: every channel has median 0 and a comparable spread despite the 50x amplitude
    np.testing.assert_allclose(np.median(image, axis=1), 0.0, atol=1e-4)
    iqr = np.subtract(*np.percentile(image, [75, 25], axis=1))
    assert np.all((iqr > 1.0) & (iqr < 1.7))
    if fmt == "brainvision":  # R128 markers survive the BrainVision round trip
        assert len(layers) == 2
        lines, mkw, mtype = layers[1]
        assert mtype == "shapes"
        assert len(lines) == 5
        np.testing.assert_allclose([ln[0, 1] for ln in lines], 1.0 + 2.0 * np.arange(5), atol=0.02)
        assert meta["onset_source"] == "markers"


def test_eeg_events_tsv_markers(tmp_path):
    import mne

    raw, _ = _raw(markers=False)
    path = tmp_path / "sub-01_task-rest_eeg.vhdr"
    mne.export.export_raw(path, raw, fmt="brainvision", verbose="error")
    (tmp_path / "sub-01_task-rest_events.tsv").write_text(
        "onset\tduration\ttrial_type\n0.5\t0\tR128\n2.5\t0\tR128\n4.0\t0\tstim\n")
    layers = read_paths(path)
    assert layers[0][1]["metadata"]["onset_source"] == "events.tsv"
    assert [ln[0, 1] for ln in layers[1][0]] == [0.5, 2.5]


def test_eeg_without_markers_has_one_layer(tmp_path):
    import mne

    raw, _ = _raw(markers=False)
    path = tmp_path / "sub-01_task-rest_eeg.edf"
    mne.export.export_raw(path, raw, fmt="edf", verbose="error")
    layers = read_paths(path)
    assert len(layers) == 1
    assert layers[0][1]["metadata"]["onset_source"] == "none"


def test_layers_load_in_a_viewer(make_napari_viewer, tmp_path):
    """The tuples are valid napari layer arguments (the viewer accepts them all)."""
    path, *_ = _bold(tmp_path, "sub-01_task-rest_desc-target_bold.nii.gz")
    spec_path, *_ = _spectrogram(tmp_path)
    viewer = make_napari_viewer()
    for data, kwargs, layer_type in read_paths([path, spec_path]):
        layer = getattr(viewer, f"add_{layer_type}")(data, **kwargs)
        assert layer.ndim == data.ndim
    assert len(viewer.layers) == 2


def test_reader_on_files_written_by_the_bids_app(napari_sample):
    """The derivatives and raw EEG of the simulated sample (written by the project's own writers) read back."""
    paths = napari_sample.paths
    spec_file = next(paths.derivatives.rglob("*_desc-stft_spectrogram.h5"))
    (spec, kwargs, _), = napari_get_reader(str(spec_file))(str(spec_file))
    meta = kwargs["metadata"]
    assert spec.shape[0] == 36 and spec.shape[1] == len(meta["channels"]) == 16
    assert spec.shape[2] == len(meta["frequencies"])
    assert kwargs["scale"][0] == meta["repetition_time"] == 2.0
    assert isinstance(meta["config"], dict) and "eeg" in meta["config"]
    assert meta["pairs_windows"].shape[1] == 20
    target_file = next(paths.derivatives.rglob("*_desc-target_bold.nii.gz"))
    (bold, bkw, _), = read_paths(target_file)
    assert bold.shape == (36, 8, 64, 64)
    assert bkw["metadata"]["kind"] == "bold-target" and bkw["scale"][0] == 2.0
    eeg_file = next(paths.bids_dir.rglob("sub-02*_eeg.vhdr"))
    layers = read_paths(eeg_file)
    assert [layer_type for _, _, layer_type in layers] == ["image", "shapes"]
    assert layers[0][0].shape[0] == 16
    assert len(layers[1][0]) == 36  # one R128 marker per BOLD volume
    assert layers[0][1]["metadata"]["onset_source"] == "markers"


def test_long_eeg_is_block_averaged_for_display(tmp_path, monkeypatch):
    import mne

    import napari_spec2vol._reader as reader

    raw, data = _raw(n_ch=3, sfreq=100.0, seconds=12.0)
    path = tmp_path / "sub-01_task-rest_eeg.vhdr"
    mne.export.export_raw(path, raw, fmt="brainvision", verbose="error")
    monkeypatch.setattr(reader, "MAX_DISPLAY_SAMPLES", 1000)  # 3 x 1200 samples -> every 4 samples averaged
    (image, kwargs, _), markers = read_paths(path)
    assert kwargs["metadata"]["decimation"] == 4
    assert image.shape == (3, 300)
    assert kwargs["scale"] == [1.0, 0.04]
    # the block means, robust-z-scored like the full-rate display (BrainVision stores 0.1 uV resolution)
    means = data.reshape(3, 300, 4).mean(axis=2)
    med = np.median(means, axis=1, keepdims=True)
    mad = 1.4826 * np.median(np.abs(means - med), axis=1, keepdims=True)
    np.testing.assert_allclose(image, (means - med) / mad, atol=0.05)
    # markers keep their times in seconds
    np.testing.assert_allclose([ln[0, 1] for ln in markers[0]], 1.0 + 2.0 * np.arange(5), atol=0.02)
    # reading in several blocks gives the same result as one block
    raw_mne = mne.io.read_raw(path, preload=False, verbose="error")
    one = reader._read_decimated(raw_mne, [0, 1, 2], 1200, 4, block=10_000_000)
    many = reader._read_decimated(raw_mne, [0, 1, 2], 1200, 4, block=50)
    np.testing.assert_array_equal(one, many)


def test_truncated_nifti_is_a_data_error_not_an_eoferror(tmp_path):
    """nib.load reads only the header; the voxels are read later and a truncated .nii.gz raised a raw EOFError."""
    import nibabel as nib

    path, _, _ = _bold(tmp_path, "sub-01_task-rest_desc-target_bold.nii.gz", shape=(16, 16, 8, 20))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # interrupted copy
    nib.load(path)  # the header still reads: the failure comes with the data
    for read in (read_paths, napari_get_reader(str(path))):
        with pytest.raises(DataError) as info:
            read(str(path))
        assert path.name in str(info.value) and "\n" not in str(info.value)
        assert "truncated" in str(info.value)


def test_truncated_nifti_opened_in_the_viewer_reports_the_data_error(make_napari_viewer, tmp_path):
    """What the user sees: napari's open error carries our DataError (its one-line message), no layer is added."""
    path, _, _ = _bold(tmp_path, "sub-01_task-rest_desc-target_bold.nii.gz", shape=(16, 16, 8, 20))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    viewer = make_napari_viewer()
    with pytest.raises(Exception) as info:
        viewer.open(str(path), plugin="spec2vol-bids")
    chain, err = [], info.value
    while err is not None and err not in chain:
        chain.append(err)
        err = err.__cause__ or err.__context__
    assert any(isinstance(e, DataError) for e in chain), [type(e).__name__ for e in chain]
    assert not any(isinstance(e, EOFError) for e in chain[:1])
    assert len(viewer.layers) == 0
