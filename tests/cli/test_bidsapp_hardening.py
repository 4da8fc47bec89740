"""Bad input that the BIDS-App once got wrong (issue 13): each case exits with its code and one line, writes no
partial output and leaves the input untouched.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

from .test_bidsapp import copy_dataset, derivative_files, run_cli, tree_hash


def error_line(err: str) -> str:
    """The one ``spec2vol_bids: error:`` line of a captured stderr (and no traceback)."""
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith("spec2vol_bids: error:")]
    assert len(lines) == 1, err
    return lines[0]


def _drop_triggers(vmrk: Path, volumes) -> None:
    """Delete the R128 marker lines of the given volumes (0-based) from a BrainVision marker file; the remaining
    ``Mk<n>=`` lines keep their numbers (MNE does not need them consecutive)."""
    lines = vmrk.read_text().splitlines(keepends=True)
    r128 = [i for i, ln in enumerate(lines) if ",R128," in ln]
    drop = {r128[v] for v in volumes}
    vmrk.write_text("".join(ln for i, ln in enumerate(lines) if i not in drop))
    assert sum(",R128," in ln for ln in vmrk.read_text().splitlines()) == len(r128) - len(drop)


# ---------------------------------------------------------------- 1. a missing volume trigger in the middle
def test_one_missing_trigger_gives_the_intact_spectrogram(tiny_bids, tiny_derivatives, tmp_path, capsys):
    bids = copy_dataset(tiny_bids, tmp_path / "bids")
    _drop_triggers(bids / "sub-01" / "eeg" / "sub-01_task-rest_eeg.vmrk", [30])
    before = tree_hash(bids)
    out = tmp_path / "out"
    assert run_cli(bids, out, tmp_path / "work") == 0
    assert "volume 30 is missing" in capsys.readouterr().err
    name = "sub-01/eeg/sub-01_task-rest_desc-stft_spectrogram"
    with h5py.File(out / f"{name}.h5", "r") as gap, h5py.File(tiny_derivatives / f"{name}.h5", "r") as intact:
        assert gap["spectrogram"].shape == intact["spectrogram"].shape == (72, 16, 249)
        np.testing.assert_allclose(gap["volume_onsets"][()], intact["volume_onsets"][()], atol=1e-9)
        for k in range(72):  # every volume, including those after the gap, gets the same EEG window
            np.testing.assert_allclose(gap["spectrogram"][k], intact["spectrogram"][k], rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(gap["pairs/targets"][()], intact["pairs/targets"][()])
    side = json.loads((out / f"{name}.json").read_text())
    assert side["NumberOfVolumeMarkers"] == 71 and side["FilledVolumeTriggers"] == [30]
    assert any("volume 30" in w for w in side["AlignmentWarnings"])
    assert not any("extrapolated" in w for w in side["AlignmentWarnings"])
    assert "missing triggers (volume(s) 30)" in (out / "sub-01.html").read_text()
    assert tree_hash(bids) == before


def test_consecutive_missing_triggers_exit_65_naming_the_gap(tiny_bids, tmp_path, capsys):
    bids = copy_dataset(tiny_bids, tmp_path / "bids")
    _drop_triggers(bids / "sub-01" / "eeg" / "sub-01_task-rest_eeg.vmrk", [30, 31, 32, 33, 34])
    before = tree_hash(bids)
    out = tmp_path / "out"
    assert run_cli(bids, out, tmp_path / "work") == 65
    line = error_line(capsys.readouterr().err)
    assert "5 consecutive volume triggers are missing (volumes 30-34)" in line
    assert "shorter" not in line  # it used to blame a short EEG
    assert not out.exists() and derivative_files(out) == []
    assert tree_hash(bids) == before
