"""Reading BrainVision samples without MNE (:func:`spec2vol_bids.io.brainvision.binary_layout`), against MNE."""

from __future__ import annotations

import numpy as np
import pytest

from spec2vol_bids.bids.eeg import EEGRecording
from spec2vol_bids.io.brainvision import binary_layout, read_block
from spec2vol_bids.pipeline.artefacts import _reader_uv


def _write(folder, fmt, dtype, data, channels, orientation="MULTIPLEXED"):
    """A BrainVision triplet as a recorder writes it: ``channels`` are (name, resolution, unit) header fields."""
    vhdr = folder / "rec.vhdr"
    infos = "\n".join(f"Ch{i + 1}={name},,{res},{unit}" for i, (name, res, unit) in enumerate(channels))
    vhdr.write_text(f"""Brain Vision Data Exchange Header File Version 1.0

[Common Infos]
Codepage=UTF-8
DataFile=rec.eeg
MarkerFile=rec.vmrk
DataFormat=BINARY
DataOrientation={orientation}
NumberOfChannels={len(channels)}
SamplingInterval=2000

[Binary Infos]
BinaryFormat={fmt}

[Channel Infos]
{infos}
""", encoding="utf-8")
    (folder / "rec.vmrk").write_text("""Brain Vision Data Exchange Marker File, Version 1.0

[Common Infos]
Codepage=UTF-8
DataFile=rec.eeg

[Marker Infos]
Mk1=New Segment,,1,1,0
""", encoding="utf-8")
    stored = data.T if orientation == "MULTIPLEXED" else data
    np.ascontiguousarray(stored).astype(dtype).tofile(folder / "rec.eeg")
    return vhdr


@pytest.mark.parametrize("fmt, dtype, channels", [
    # Brain Products recorders: 16-bit integers at 0.1 or 0.5 uV; a channel in mV, one with the resolution or the
    # unit left empty (1, microvolts)
    ("INT_16", "<i2", [("Fz", "0.1", "µV"), ("Cz", "0.5", "µV"), ("ECG", "0.01", "mV"), ("Pz", "", "µV"),
                       ("Oz", "0.1", "")]),
    ("INT_32", "<i4", [("Fz", "0.05", "µV"), ("Cz", "1", "uV")]),
    ("IEEE_FLOAT_32", "<f4", [("Fz", "1", "µV"), ("Cz", "0.1", "µV")]),
])
def test_binary_recordings_read_as_mne_reads_them(tmp_path, fmt, dtype, channels):
    rng = np.random.default_rng(0)
    stored = np.round(rng.standard_normal((len(channels), 3000)) * 1000)
    vhdr = _write(tmp_path, fmt, dtype, stored, channels)
    layout = binary_layout(vhdr)
    assert layout is not None and layout.n_channels == len(channels) and layout.n_samples == 3000
    assert (layout.scale is None) == (fmt == "IEEE_FLOAT_32" and all(r == "1" for _, r, _ in channels))
    rec = EEGRecording(vhdr)
    expected = rec.raw.get_data() * 1e6  # MNE: volts
    got = read_block(layout.data_file, layout.n_channels, 100, 2900, dtype=layout.dtype, scale=layout.scale)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected[:, 100:2900], rtol=1e-6, atol=1e-6)
    # the correction steps read it directly (not through MNE), with the same numbers; a few channels are read
    # (and converted) alone, in the order asked for
    read = _reader_uv(rec, [1, 0])
    assert read.__name__ == "direct"
    np.testing.assert_allclose(read(0, 3000), expected[[1, 0]], rtol=1e-6, atol=1e-6)
    last = read_block(layout.data_file, layout.n_channels, 7, 2500, dtype=layout.dtype, scale=layout.scale,
                      channels=[len(channels) - 1])
    assert last.shape == (1, 2493) and last.dtype == np.float32
    np.testing.assert_array_equal(last, read_block(
        layout.data_file, layout.n_channels, 7, 2500, dtype=layout.dtype, scale=layout.scale)[-1:])


def test_other_layouts_are_left_to_mne(tmp_path):
    rng = np.random.default_rng(1)
    data = np.round(rng.standard_normal((2, 500)) * 100)
    vhdr = _write(tmp_path, "INT_16", "<i2", data, [("Fz", "0.1", "µV"), ("Cz", "0.1", "µV")],
                  orientation="VECTORIZED")
    assert binary_layout(vhdr) is None
    rec = EEGRecording(vhdr)
    read = _reader_uv(rec)
    assert read.__name__ != "direct"
    np.testing.assert_allclose(read(0, 500), data * 0.1, atol=1e-6)
    # a channel in a unit that is no voltage: MNE's business
    _write(tmp_path, "INT_16", "<i2", data, [("Fz", "0.1", "µV"), ("GSR", "1", "S")])
    assert binary_layout(vhdr) is None


def test_the_writer_replaces_what_was_there(tmp_path):
    # an existing data file is overwritten, not partly (the longer old content is gone); an empty one, such as
    # atomic_path's temporary, is written without being truncated first (see BrainVisionWriter.__init__)
    from spec2vol_bids.io.brainvision import BrainVisionWriter

    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    for old in (b"", b"\x01" * 1000):
        vhdr = tmp_path / f"old{len(old)}.vhdr"
        vhdr.with_suffix(".eeg").write_bytes(old)
        with BrainVisionWriter(vhdr, ["a", "b"], 100.0, [], meas_date="20000101000000000000") as w:
            w.write(x)
        layout = binary_layout(vhdr)
        assert layout.n_samples == 3
        np.testing.assert_array_equal(read_block(layout.data_file, 2, 0, 3), x)
