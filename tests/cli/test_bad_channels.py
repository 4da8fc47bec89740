"""Channels marked ``status`` = ``bad`` in ``channels.tsv`` (as MNE-BIDS writes them) leave the spectrogram."""

from __future__ import annotations

import json

import h5py
import pytest

from spec2vol_bids.bids.eeg import read_bad_channels
from spec2vol_bids.io import read_spectrogram

from .test_bidsapp import copy_dataset, run_cli


def mark_bad(channels_tsv, bad: dict[str, str]) -> list[str]:
    """Set ``status`` (and ``status_description``) of the ``bad`` channels; return every channel name."""
    lines = channels_tsv.read_text().splitlines()
    head = lines[0].split("\t")
    status, note = head.index("status"), head.index("status_description")
    names = []
    for i, line in enumerate(lines[1:], start=1):
        cells = line.split("\t")
        names.append(cells[0])
        if cells[0] in bad:
            cells[status], cells[note] = "bad", bad[cells[0]] or "n/a"
            lines[i] = "\t".join(cells)
    channels_tsv.write_text("\n".join(lines) + "\n")
    return names


def test_read_bad_channels(tmp_path):
    tsv = tmp_path / "channels.tsv"
    tsv.write_text("name\ttype\tunits\tstatus\tstatus_description\nFz\tEEG\tuV\tgood\tn/a\n"
                   "Cz\tEEG\tuV\tbad\tflat line\nPz\tEEG\tuV\tBAD\tn/a\n")
    assert read_bad_channels(tsv) == {"Cz": "flat line", "Pz": ""}
    tsv.write_text("name\ttype\tunits\nFz\tEEG\tuV\n")
    assert read_bad_channels(tsv) == {}


@pytest.fixture(scope="module")
def bad_bids(tiny_bids, tmp_path_factory):
    bids = copy_dataset(tiny_bids, tmp_path_factory.mktemp("bad") / "bids", subjects=("01",))
    names = mark_bad(bids / "sub-01" / "eeg" / "sub-01_task-rest_channels.tsv", {"Cz": "flat line", "Pz": ""})
    return bids, names


def test_bad_channels_are_left_out_and_reported(bad_bids, tmp_path):
    bids, names = bad_bids
    out = tmp_path / "out"
    assert run_cli(bids, out, tmp_path / "work") == 0
    spec_file = out / "sub-01" / "eeg" / "sub-01_task-rest_desc-stft_spectrogram.h5"
    with h5py.File(spec_file, "r") as h5:
        assert h5["spectrogram"].shape[1] == len(names) - 2
        assert json.loads(h5.attrs["channels"]) == [n for n in names if n not in ("Cz", "Pz")]
    side = json.loads(spec_file.with_suffix(".json").read_text())
    assert side["ExcludedBadChannels"] == {"Cz": "flat line", "Pz": ""} and side["KeptBadChannels"] == {}
    html = (out / "sub-01.html").read_text()
    assert "2 channel(s) marked bad in channels.tsv left out of the spectrogram: Cz (flat line), Pz." in html
    assert read_spectrogram(spec_file).info["bads"] == []


def test_keep_bad_channels(bad_bids, tmp_path):
    bids, names = bad_bids
    out = tmp_path / "out"
    assert run_cli(bids, out, tmp_path / "work", "--keep-bad-channels") == 0
    spec_file = out / "sub-01" / "eeg" / "sub-01_task-rest_desc-stft_spectrogram.h5"
    spec = read_spectrogram(spec_file)
    assert spec.ch_names == names and spec.info["bads"] == ["Cz", "Pz"]
    side = json.loads(spec_file.with_suffix(".json").read_text())
    assert side["KeptBadChannels"] == {"Cz": "flat line", "Pz": ""} and side["ExcludedBadChannels"] == {}
    assert "kept in the spectrogram (--keep-bad-channels): Cz (flat line), Pz." in (out / "sub-01.html").read_text()


def test_every_channel_bad_is_a_data_error(tiny_bids, tmp_path, capsys):
    bids = copy_dataset(tiny_bids, tmp_path / "bids", subjects=("01",))
    tsv = bids / "sub-01" / "eeg" / "sub-01_task-rest_channels.tsv"
    names = mark_bad(tsv, {})
    mark_bad(tsv, dict.fromkeys(names, "noisy"))
    assert run_cli(bids, tmp_path / "out", tmp_path / "work") == 65
    err = capsys.readouterr().err
    assert "every selected channel of sub-01_task-rest_eeg.vhdr is marked bad" in err and "--keep-bad-channels" in err
    assert not (tmp_path / "out").exists()
