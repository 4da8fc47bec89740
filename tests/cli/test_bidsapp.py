"""End-to-end tests of the BIDS-App, run in-process through ``spec2vol_bids.cli.main.main`` on the tiny dataset."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest

from spec2vol_bids.cli.main import main
from spec2vol_bids.io.spectrogram import load_spectrogram

from ..tools import require_tool

DERIV_PATTERNS = ("*_desc-stft_spectrogram.h5", "*_desc-target_bold.nii.gz", "*_desc-brain_mask.nii.gz",
                  "*_desc-spec2vol_bold.nii.gz")


# ------------------------------------------------------------------------------------------------ helpers
def copy_dataset(src: Path, dst: Path, subjects=("01",)) -> Path:
    """A private copy of some subjects of a raw dataset (no derivatives), safe to modify."""
    dst.mkdir(parents=True)
    for name in ("dataset_description.json", "README", "participants.json"):
        if (src / name).is_file():
            shutil.copy2(src / name, dst / name)
    rows = (src / "participants.tsv").read_text().splitlines()
    keep = [rows[0]] + [r for r in rows[1:] if r.split("\t")[0].removeprefix("sub-") in subjects]
    (dst / "participants.tsv").write_text("\n".join(keep) + "\n")
    for s in subjects:
        shutil.copytree(src / f"sub-{s}", dst / f"sub-{s}")
    return dst


def tree_hash(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def derivative_files(out: Path) -> list[Path]:
    if not out.exists():
        return []
    return sorted(p for pat in DERIV_PATTERNS for p in out.rglob(pat))


def run_cli(bids, out, work, *extra) -> int:
    return main([str(bids), str(out), "participant", "-w", str(work), "--skip-bids-validation", "--nprocs", "1",
                 *map(str, extra)])


def _fov_corners(img) -> np.ndarray:
    """World coordinates of the two outer voxel-edge corners of an image's grid."""
    shape = img.shape[:3]
    corners = np.array([[-0.5, -0.5, -0.5, 1.0], [shape[0] - 0.5, shape[1] - 0.5, shape[2] - 0.5, 1.0]])
    return (img.affine @ corners.T).T[:, :3]


def official_row(data: np.ndarray, start: int, n: int, n_freqs: int = 249) -> np.ndarray:
    """Independent NumPy version of the official per-window step: |FFT| bins 1..n_freqs, z-score over channels."""
    seg = data[:, start:start + n]  # [C, n]
    mag = np.abs(np.fft.fft(seg, axis=1))[:, 1:n_freqs + 1]  # [C, F]
    return (mag - mag.mean(axis=0)) / mag.std(axis=0)


# ------------------------------------------------------------------------------------------------ outputs
def test_participant_outputs_follow_the_contract(tiny_derivatives, tiny_bids):
    out = tiny_derivatives
    for s in ("01", "02", "03", "04"):
        spec = out / f"sub-{s}" / "eeg" / f"sub-{s}_task-rest_desc-stft_spectrogram.h5"
        target = out / f"sub-{s}" / "func" / f"sub-{s}_task-rest_desc-target_bold.nii.gz"
        mask = out / f"sub-{s}" / "func" / f"sub-{s}_task-rest_desc-brain_mask.nii.gz"
        for f in (spec, target, mask):
            assert f.is_file(), f
            assert f.with_name(f.name.split(".")[0] + ".json").is_file()
        with h5py.File(spec, "r") as h5:  # the on-disk contract, read independently of spec2vol_bids.io
            assert h5["spectrogram"].shape == (72, 16, 249) and h5["spectrogram"].dtype == np.float32
            assert h5["valid"].dtype == bool and h5["valid"].shape == (72,)
            assert h5["frequencies"].shape == (249,)
            np.testing.assert_allclose(h5["frequencies"][()], np.arange(1, 250) / 2.0)  # k / TR, TR = 2 s
            windows, targets = h5["pairs/windows"][()], h5["pairs/targets"][()]
            assert windows.dtype == np.int32 and targets.dtype == np.int32
            # official pairing: windows i..i+19 -> volume i+20 after discarding 6 volumes
            np.testing.assert_array_equal(targets, np.arange(26, 72))
            np.testing.assert_array_equal(windows, targets[:, None] - 20 + np.arange(20)[None, :])
            channels = json.loads(h5.attrs["channels"])
            assert len(channels) == 16
            assert h5.attrs["onset_source"] == "markers"
            assert float(h5.attrs["repetition_time"]) == 2.0
            assert json.loads(h5.attrs["config"])["pairing"]["n_windows"] == 20
        img = nib.load(target)
        assert img.shape == (64, 64, 8, 72) and img.get_data_dtype() == np.float32
        assert img.header.get_zooms()[3] == pytest.approx(2.0)
        data = np.asarray(img.dataobj)
        assert data.min() == pytest.approx(0.0) and data.max() == pytest.approx(1.0)
        raw = nib.load(tiny_bids / f"sub-{s}" / "func" / f"sub-{s}_task-rest_bold.nii.gz")
        np.testing.assert_allclose(img.affine, raw.affine, atol=1e-5)  # 64 x 64 x 8 grid: no resize
        m = nib.load(mask)
        assert m.shape == (64, 64, 8) and m.get_data_dtype() == np.uint8
        side = json.loads(target.with_name(target.name.replace(".nii.gz", ".json")).read_text())
        assert side["RepetitionTime"] == 2.0 and side["TaskName"] == "rest"
        assert side["Sources"] == [f"bids:raw:sub-{s}/func/sub-{s}_task-rest_bold.nii.gz"]
        assert (out / f"sub-{s}.html").is_file()
        logs = list((out / f"sub-{s}" / "log").glob("*/spec2vol.toml"))
        assert len(logs) == 1 and (logs[0].parent / "spec2vol.log").is_file()
        assert "[eeg]" in logs[0].read_text()
    desc = json.loads((out / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative"
    assert desc["GeneratedBy"][0]["Name"] == "spec2vol-bids"
    assert desc["DatasetLinks"]["raw"].startswith("file://")
    assert desc["SourceDatasets"]
    assert "*_spectrogram.h5" in (out / ".bidsignore").read_text()


def test_derivatives_pass_the_bids_validator(tiny_derivatives):
    from spec2vol_bids.bids.validate import run_validator, validator_available

    require_tool(validator_available(), "bids-validator-deno")
    report = run_validator(tiny_derivatives, recursive=True)
    assert report.ok, report.summary()


def test_spectrogram_is_aligned_to_the_volume_markers(tiny_derivatives, tiny_bids):
    """EEG starts before the first volume: row 0 is the window at the first marker (simulator truth), and
    the default preprocessing equals a straightforward NumPy version of the official steps."""
    import mne

    s = "02"
    params = json.loads((tiny_bids / "derivatives" / "simulation" / f"sub-{s}" / "func"
                         / f"sub-{s}_task-rest_desc-simulation_params.json").read_text())
    first = float(params["FirstVolumeOnset"])
    assert first > 1.0  # the recording starts well before the scan
    spec = tiny_derivatives / f"sub-{s}" / "eeg" / f"sub-{s}_task-rest_desc-stft_spectrogram.h5"
    content = load_spectrogram(spec)
    onsets, rows, sfreq = content.volume_onsets, content.spectrogram, float(content.attrs["sfreq"])
    assert onsets[0] == pytest.approx(first, abs=1.0 / sfreq)
    np.testing.assert_allclose(np.diff(onsets), 2.0, atol=1.0 / sfreq)
    raw = mne.io.read_raw_brainvision(tiny_bids / f"sub-{s}" / "eeg" / f"sub-{s}_task-rest_eeg.vhdr",
                                      preload=True, verbose="error")
    data = raw.get_data()  # [C, n_samples]
    n = int(round(2.0 * sfreq))
    for k in (0, 1, 40, 71):
        start = int(round(onsets[k] * sfreq))
        np.testing.assert_allclose(rows[k], official_row(data, start, n), rtol=1e-4, atol=1e-4)
    # a window starting at EEG sample 0 (the official code's assumption) is a different row
    assert not np.allclose(rows[0], official_row(data, 0, n), atol=1e-2)


def test_rerun_with_same_work_dir_reuses_the_cache(tiny_bids, tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    assert run_cli(tiny_bids, out, work, "--participant-label", "03") == 0
    results = sorted(work.rglob("result_spectrogram.pklz")) + sorted(work.rglob("result_target.pklz"))
    assert len(results) == 2
    before = [r.stat().st_mtime_ns for r in results]
    spec = next(out.rglob("*_desc-stft_spectrogram.h5"))
    spec.unlink()  # the sink always runs: a deleted output is restored from the cache
    assert run_cli(tiny_bids, out, work, "--participant-label", "sub-03") == 0
    assert [r.stat().st_mtime_ns for r in results] == before  # finished nodes were not re-run
    assert spec.is_file()


def test_tr_fallback_without_markers_warns(tiny_bids, tmp_path, capfd):
    bids = copy_dataset(tiny_bids, tmp_path / "bids")
    eeg = bids / "sub-01" / "eeg"
    vmrk = eeg / "sub-01_task-rest_eeg.vmrk"
    vmrk.write_text("".join(ln for ln in vmrk.read_text().splitlines(keepends=True) if "R128" not in ln))
    (eeg / "sub-01_task-rest_events.tsv").unlink()
    (eeg / "sub-01_task-rest_events.json").unlink()
    out = tmp_path / "out"
    assert run_cli(bids, out, tmp_path / "work") == 0
    err = capfd.readouterr().err
    assert "TR fallback" in err and "ASSUMING THE FIRST EEG SAMPLE IS THE FIRST VOLUME" in err
    spec = load_spectrogram(next(out.rglob("*_spectrogram.h5")), data=False)
    assert spec.attrs["onset_source"] == "tr-fallback"
    np.testing.assert_allclose(spec.volume_onsets, np.arange(72) * 2.0)


def test_events_tsv_onsets_when_the_raw_file_has_no_markers(tiny_bids, tmp_path):
    bids = copy_dataset(tiny_bids, tmp_path / "bids")
    vmrk = bids / "sub-01" / "eeg" / "sub-01_task-rest_eeg.vmrk"
    vmrk.write_text("".join(ln for ln in vmrk.read_text().splitlines(keepends=True) if "R128" not in ln))
    out = tmp_path / "out"
    assert run_cli(bids, out, tmp_path / "work") == 0
    spec = load_spectrogram(next(out.rglob("*_spectrogram.h5")), data=False)
    assert spec.attrs["onset_source"] == "events.tsv"
    first = spec.volume_onsets[0]
    params = json.loads(next((tiny_bids / "derivatives" / "simulation").rglob(
        "sub-01_task-rest_desc-simulation_params.json")).read_text())
    assert first == pytest.approx(params["FirstVolumeOnset"], abs=0.01)


def test_output_under_bids_derivatives_leaves_raw_untouched(tiny_bids, tmp_path):
    bids = copy_dataset(tiny_bids, tmp_path / "bids")
    before = tree_hash(bids)
    out = bids / "derivatives" / "spec2vol"
    assert run_cli(bids, out, tmp_path / "work") == 0
    assert len(derivative_files(out)) == 3
    after = {k: v for k, v in tree_hash(bids).items() if not k.startswith("derivatives/")}
    assert after == before


# ------------------------------------------------------------------------------------------------ bad input
def test_empty_dataset_exits_66(tmp_path, capsys):
    bids = tmp_path / "bids"
    bids.mkdir()
    (bids / "dataset_description.json").write_text('{"Name": "empty", "BIDSVersion": "1.9.0"}')
    code = run_cli(bids, tmp_path / "out", tmp_path / "work")
    assert code == 66
    assert "has no subjects" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_unknown_participant_exits_18_with_mount_hint(tiny_bids, tmp_path, capsys):
    code = run_cli(tiny_bids, tmp_path / "out", tmp_path / "work", "--participant-label", "sub-99")
    assert code == 18
    err = capsys.readouterr().err
    assert "99" in err and "docker" in err.lower()
    assert not (tmp_path / "out").exists()


def test_missing_bids_dir_exits_66(tmp_path):
    assert run_cli(tmp_path / "nope", tmp_path / "out", tmp_path / "work") == 66


def test_unknown_analysis_level_exits_17(tiny_bids, tmp_path):
    assert main([str(tiny_bids), str(tmp_path / "out"), "subject"]) == 17


def test_out_dir_equal_to_bids_dir_exits_64(tiny_bids, tmp_path, capsys):
    bids = copy_dataset(tiny_bids, tmp_path / "bids")
    before = tree_hash(bids)
    assert run_cli(bids, bids, tmp_path / "work") == 64
    assert "derivatives" in capsys.readouterr().err  # suggests BIDS_DIR/derivatives/...
    assert tree_hash(bids) == before


def test_out_dir_inside_bids_outside_derivatives_exits_64(tiny_bids, tmp_path):
    bids = copy_dataset(tiny_bids, tmp_path / "bids")
    assert run_cli(bids, bids / "results", tmp_path / "work") == 64
    assert not (bids / "results").exists()


def test_work_dir_inside_bids_dir_exits_64(tiny_bids, tmp_path):
    bids = copy_dataset(tiny_bids, tmp_path / "bids")
    before = tree_hash(bids)
    assert run_cli(bids, tmp_path / "out", bids / "work") == 64
    assert tree_hash(bids) == before and not (tmp_path / "out").exists()


def test_eeg_shorter_than_bold_exits_65(tiny_bids, tmp_path, capsys):
    bids = copy_dataset(tiny_bids, tmp_path / "bids")
    eeg = bids / "sub-01" / "eeg" / "sub-01_task-rest_eeg.eeg"
    n_ch, sfreq = 16, 250
    keep = int(60 * sfreq) * n_ch * 4  # 60 s of float32 multiplexed samples; the BOLD run lasts 144 s
    eeg.write_bytes(eeg.read_bytes()[:keep])
    code = run_cli(bids, tmp_path / "out", tmp_path / "work")
    assert code == 65
    assert "shorter than the BOLD" in capsys.readouterr().err
    assert derivative_files(tmp_path / "out") == []


def test_corrupt_nifti_exits_65_without_partial_outputs(tiny_bids, tmp_path, capsys):
    bids = copy_dataset(tiny_bids, tmp_path / "bids", subjects=("01",))
    bold = bids / "sub-01" / "func" / "sub-01_task-rest_bold.nii.gz"
    bold.write_bytes(bold.read_bytes()[: bold.stat().st_size // 3])  # truncated download
    out = tmp_path / "out"
    code = run_cli(bids, out, tmp_path / "work")
    assert code == 65
    err = capsys.readouterr().err
    assert "sub-01_task-rest_bold.nii.gz" in err
    assert derivative_files(out) == []  # neither the target nor the (successful) spectrogram were published


def test_nan_in_eeg_exits_65_with_crash_file(tiny_bids, tmp_path, capsys):
    bids = copy_dataset(tiny_bids, tmp_path / "bids")
    eeg = bids / "sub-01" / "eeg" / "sub-01_task-rest_eeg.eeg"
    data = np.fromfile(eeg, dtype="<f4").reshape(-1, 16)  # [n_samples, C], multiplexed
    data[5000:5010, 3] = np.nan
    data.tofile(eeg)
    out = tmp_path / "out"
    code = run_cli(bids, out, tmp_path / "work")
    assert code == 65
    err = capsys.readouterr().err
    assert "NaN" in err and "crash" in err.lower()
    crashes = list((out / "sub-01" / "log").glob("*/crash-*.txt"))
    assert len(crashes) == 1 and "DataError" in crashes[0].read_text()
    assert derivative_files(out) == []
    assert not list(out.rglob("*.tmp*"))  # no temporary leftovers of atomic writes


def test_parallel_participants_into_one_out_dir(tiny_bids, tmp_path):
    bids = copy_dataset(tiny_bids, tmp_path / "bids", subjects=("01", "02"))
    out = tmp_path / "out"
    procs = [subprocess.Popen([sys.executable, "-m", "spec2vol_bids", str(bids), str(out), "participant",
                               "--participant-label", s, "-w", str(tmp_path / f"work{s}"),
                               "--skip-bids-validation", "--nprocs", "1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for s in ("01", "02")]
    for p in procs:
        _, err = p.communicate(timeout=240)
        assert p.returncode == 0, err
    assert len(derivative_files(out)) == 6
    json.loads((out / "dataset_description.json").read_text())  # intact
    assert (out / "sub-01.html").is_file() and (out / "sub-02.html").is_file()


# ------------------------------------------------------------------------------------------------ group
def test_group_level_metrics_against_perfect_prediction(tiny_derivatives, tiny_bids, tmp_path):
    """A 'prediction' equal to the target volumes must give SSIM 1, dynamic correlation 1, infinite PSNR."""
    out = tmp_path / "out"
    out.mkdir()
    shutil.copy2(tiny_derivatives / "dataset_description.json", out)
    for s in ("01", "02"):
        shutil.copytree(tiny_derivatives / f"sub-{s}" / "func", out / f"sub-{s}" / "func")
    for s in ("01", "02"):
        target = out / f"sub-{s}" / "func" / f"sub-{s}_task-rest_desc-target_bold.nii.gz"
        img = nib.load(target)
        idx = np.arange(60, 72)  # a few volumes keep the (float64) SSIM cheap
        pred = np.asarray(img.dataobj)[..., idx]
        pred_path = target.with_name(target.name.replace("desc-target", "desc-spec2vol"))
        nib.save(nib.Nifti1Image(pred, img.affine), pred_path)
        pred_path.with_name(pred_path.name.replace(".nii.gz", ".json")).write_text(json.dumps(
            {"VolumeIndices": idx.tolist(), "RepetitionTime": 2.0, "TaskName": "rest"}))
    # sub-02's prediction is shifted by one volume: worse than perfect
    p2 = out / "sub-02" / "func" / "sub-02_task-rest_desc-spec2vol_bold.json"
    p2.write_text(json.dumps({"VolumeIndices": list(range(59, 71)), "RepetitionTime": 2.0}))
    code = main([str(tiny_bids), str(out), "group"])
    assert code == 0
    import pandas as pd

    table = pd.read_csv(out / "group_metrics.tsv", sep="\t", na_values="n/a")
    runs = table[table.level == "run"].set_index("participant_id")
    assert list(runs.index) == ["sub-01", "sub-02"]
    assert list(runs.bids_name) == ["sub-01_task-rest", "sub-02_task-rest"]
    r1 = runs.iloc[0]
    assert r1.ssim == pytest.approx(1.0) and r1.dynamic_correlation == pytest.approx(1.0)
    assert np.isinf(r1.psnr) or np.isnan(r1.psnr)
    r2 = runs.iloc[1]
    assert r2.ssim < 1.0 and r2.dynamic_correlation < 1.0 and np.isfinite(r2.psnr)
    assert set(table.level) == {"run", "subject", "group"}
    assert (out / "group.html").is_file()


def test_group_level_without_outputs_exits_66(tiny_bids, tmp_path):
    (tmp_path / "out").mkdir()
    assert main([str(tiny_bids), str(tmp_path / "out"), "group"]) == 66
    assert main([str(tiny_bids), str(tmp_path / "missing"), "group"]) == 66


# ------------------------------------------------------------------------------------------------ validation
def test_invalid_input_dataset_exits_16_unless_skipped(tiny_bids, tmp_path, capsys):
    from spec2vol_bids.bids.validate import validator_available

    require_tool(validator_available(), "bids-validator-deno")
    bids = copy_dataset(tiny_bids, tmp_path / "bids")
    (bids / "sub-01" / "func" / "notes_about_the_scan.txt").write_text("not a BIDS file")
    code = main([str(bids), str(tmp_path / "out"), "participant", "-w", str(tmp_path / "work")])
    assert code == 16
    assert "validation" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_valid_input_passes_validation_and_plugin_file_is_used(tiny_bids, tmp_path):
    from spec2vol_bids.bids.validate import validator_available

    require_tool(validator_available(), "bids-validator-deno")
    bids = copy_dataset(tiny_bids, tmp_path / "bids")
    plugin = tmp_path / "plugin.yml"
    plugin.write_text("plugin: Linear\nplugin_args: {}\n")
    out = tmp_path / "out"
    code = main([str(bids), str(out), "participant", "-w", str(tmp_path / "work"), "--use-plugin", str(plugin),
                 "--n-windows", "10", "--discard", "2", "--exclude-channels", "Fp1", "--taper", "hann"])
    assert code == 0
    spec = load_spectrogram(next(out.rglob("*_spectrogram.h5")), data=False)
    assert spec.shape == (72, 15, 249)  # Fp1 excluded
    assert spec.pair_windows.shape == (72 - 2 - 10, 10)
    assert spec.config["eeg"]["taper"] == "hann" and spec.config["eeg"]["exclude"] == ["Fp1"]
    toml = next((out / "sub-01" / "log").glob("*/spec2vol.toml")).read_text()
    assert 'taper = "hann"' in toml and "n_windows = 10" in toml


# ------------------------------------------------------------------------------------------------ other shapes
@pytest.mark.slow
def test_cnepfl_like_run_is_resized_and_ecg_can_be_dropped(tmp_path):
    """64 channels (one ECG) at 5 kHz, 108 x 108 x 64 BOLD: DCT resize to 64 x 64 x 30 with the same field of view."""
    from spec2vol_bids.simulate import simulate_dataset

    bids = simulate_dataset(tmp_path / "bids", preset="cnepfl-like", subjects=1, runs=1, volumes=24, seed=1,
                            progress=False)
    out = tmp_path / "out"
    assert run_cli(bids, out, tmp_path / "work", "--n-windows", "8", "--discard", "2",
                   "--exclude-channel-types", "ECG") == 0
    spec = load_spectrogram(next(out.rglob("*_spectrogram.h5")), data=False)
    assert spec.shape == (24, 63, 249)
    assert "ECG" not in spec.channel_types
    np.testing.assert_allclose(spec.frequencies, np.arange(1, 250) / 1.28)
    target = nib.load(next(out.rglob("*_desc-target_bold.nii.gz")))
    raw = nib.load(next(bids.rglob("*_bold.nii.gz")))
    assert raw.shape[:3] == (108, 108, 64) and target.shape == (64, 64, 30, 24)
    # same field of view: the outer voxel edges map to the same world coordinates
    np.testing.assert_allclose(_fov_corners(target), _fov_corners(raw), atol=1e-4)
    side = json.loads(next(out.rglob("*_desc-target_bold.json")).read_text())
    assert side["Resize"] == "dct" and side["NativeShape"] == [108, 108, 64, 24]
