"""Streaming BrainVision and NIfTI writers round-trip through MNE and nibabel."""

from __future__ import annotations

import gzip

import mne
import nibabel as nib
import numpy as np
import pytest

from spec2vol_bids.simulate.writers import BrainVisionWriter, NiftiStreamWriter


def test_brainvision_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.normal(0, 20, (3, 1234))  # microvolts
    markers = [("Stimulus", "S  1", 100), ("Response", "R128", 10), ("Response", "R128", 510)]
    vhdr = tmp_path / "rec_eeg.vhdr"
    with BrainVisionWriter(vhdr, ["Cz", "Pz", "ECG"], 250.0, markers, meas_date="20000102090000000000") as w:
        for start in range(0, 1234, 500):  # three blocks of different sizes
            w.write(data[:, start:start + 500])
    assert w.n_written == 1234
    raw = mne.io.read_raw_brainvision(vhdr, preload=True, verbose="error")
    assert raw.ch_names == ["Cz", "Pz", "ECG"] and raw.info["sfreq"] == 250.0
    np.testing.assert_allclose(raw.get_data() * 1e6, data.astype(np.float32), rtol=1e-6, atol=1e-5)
    ann = raw.annotations
    keep = [not d.startswith("New Segment") for d in ann.description]
    assert list(ann.description[keep]) == ["Response/R128", "Stimulus/S  1", "Response/R128"]  # sorted
    np.testing.assert_allclose(ann.onset[keep], np.array([10, 100, 510]) / 250.0)
    assert raw.info["meas_date"].isoformat().startswith("2000-01-02T09:00:00")
    vmrk = vhdr.with_suffix(".vmrk").read_text()
    assert "Mk2=Response,R128,11,1,0" in vmrk  # 1-based positions
    with pytest.raises(ValueError, match="shape"):
        with BrainVisionWriter(tmp_path / "x.vhdr", ["Cz"], 250.0, [], meas_date="20000102090000000000") as w2:
            w2.write(np.zeros((2, 5)))


@pytest.mark.parametrize("dtype", [np.int16, np.float32])
def test_nifti_stream_round_trip(tmp_path, dtype):
    rng = np.random.default_rng(1)
    vols = rng.uniform(0, 1000, (5, 6, 4, 7))
    aff = np.array([[3.5, 0, 0, -100], [0, 3.5, 0, -120], [0, 0, 4, -30], [0, 0, 0, 1.0]])
    path = tmp_path / "bold.nii.gz"
    with NiftiStreamWriter(path, vols.shape, aff, (3.5, 3.5, 4.0, 2.16), dtype) as w:
        for t in range(vols.shape[3]):
            w.write(vols[..., t])
    img = nib.load(path)
    assert img.shape == vols.shape and img.get_data_dtype() == np.dtype(dtype)
    np.testing.assert_allclose(img.affine, aff)
    assert img.header.get_zooms() == pytest.approx((3.5, 3.5, 4.0, 2.16))
    assert img.header.get_xyzt_units() == ("mm", "sec")
    assert int(img.header["qform_code"]) == int(img.header["sform_code"]) == 1
    expected = np.rint(vols) if np.dtype(dtype).kind == "i" else vols.astype(np.float32)
    np.testing.assert_allclose(np.asanyarray(img.dataobj), expected, rtol=1e-6)
    # deterministic gzip header: mtime 0 and no file name
    with open(path, "rb") as f:
        head = f.read(10)
    assert head[4:8] == b"\x00\x00\x00\x00" and not (head[3] & 0x08)
    with gzip.open(path) as f:
        assert len(f.read()) == 352 + vols.size * np.dtype(dtype).itemsize


def test_nifti_stream_refuses_incomplete_files(tmp_path):
    w = NiftiStreamWriter(tmp_path / "x.nii.gz", (2, 2, 2, 3), np.eye(4), (1, 1, 1, 1), np.float32)
    w.write(np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="shape"):
        w.write(np.zeros((2, 2)))
    with pytest.raises(RuntimeError, match="wrote 1 of 3 volumes"):
        w.close()
