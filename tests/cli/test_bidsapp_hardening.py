"""Bad input that the BIDS-App once got wrong (issue 13): each case exits with its code and one line, writes no
partial output and leaves the input untouched.

Read-only folders: root ignores permission bits, so :func:`read_only` makes a folder immutable with ``chattr +i``
when running as root (``chmod`` otherwise) and checks that the OS now refuses to create a file in it; where neither
works (root on a file system without the immutable flag, e.g. overlayfs or tmpfs in a container), it simulates the
refusal of a read-only mount (``EROFS`` from ``mkstemp``/``os.access``) so the test still runs in CI.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

from spec2vol_bids.io.spectrogram import load_spectrogram
from spec2vol_bids.utils import WRITE_HINT

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
    gap, intact = load_spectrogram(out / f"{name}.h5"), load_spectrogram(tiny_derivatives / f"{name}.h5")
    assert gap.shape == intact.shape == (72, 16, 249)
    np.testing.assert_allclose(gap.volume_onsets, intact.volume_onsets, atol=1e-9)
    for k in range(72):  # every volume, including those after the gap, gets the same EEG window
        np.testing.assert_allclose(gap.spectrogram[k], intact.spectrogram[k], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(gap.pair_targets, intact.pair_targets)
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


# ---------------------------------------------------------------- 2. read-only OUT_DIR / work dir
def _can_create_in(path: Path) -> bool:
    try:
        fd, probe = tempfile.mkstemp(dir=path)
    except OSError:
        return False
    os.close(fd)
    os.unlink(probe)
    return True


@contextlib.contextmanager
def read_only(path: Path, monkeypatch):
    """Make the existing folder ``path`` unwritable for this process (see the module docstring)."""
    undo = None
    if os.geteuid() != 0:
        path.chmod(0o555)
        undo = lambda: path.chmod(0o755)  # noqa: E731
    elif shutil.which("chattr") and subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode == 0:
        undo = lambda: subprocess.run(["chattr", "-i", str(path)], check=True)  # noqa: E731
    if undo is not None and _can_create_in(path):  # the flag did not hold here
        undo()
        undo = None
    if undo is None:  # simulate a read-only mount
        real_mkstemp, real_access = tempfile.mkstemp, os.access
        inside = lambda d: d is not None and Path(os.path.realpath(d)).is_relative_to(os.path.realpath(path))  # noqa: E731

        def mkstemp(*args, dir=None, **kwargs):
            if inside(dir):
                raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(dir))
            return real_mkstemp(*args, dir=dir, **kwargs)

        def access(p, mode, *args, **kwargs):
            return False if (mode & os.W_OK and inside(p)) else real_access(p, mode, *args, **kwargs)

        monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
        monkeypatch.setattr(os, "access", access)
    try:
        assert not _can_create_in(path)
        yield
    finally:
        if undo is not None:
            undo()


def test_read_only_out_dir_exits_73_before_anything_is_written(tiny_bids, tmp_path, capsys, monkeypatch):
    out, work = tmp_path / "out", tmp_path / "work"
    out.mkdir()
    before = tree_hash(tiny_bids)
    with read_only(out, monkeypatch):
        code = run_cli(tiny_bids, out, work, "--participant-label", "01")
    assert code == 73
    line = error_line(capsys.readouterr().err)
    assert f"OUT_DIR {out} is not writable" in line and line.endswith(WRITE_HINT)
    assert list(out.iterdir()) == [] and not work.exists()  # no run logs, no work dir
    assert tree_hash(tiny_bids) == before


def test_read_only_work_dir_exits_73_instead_of_a_failed_run(tiny_bids, tmp_path, capsys, monkeypatch):
    out, work = tmp_path / "out", tmp_path / "work"
    work.mkdir()
    with read_only(work, monkeypatch):
        code = run_cli(tiny_bids, out, work, "--participant-label", "01")
    assert code == 73
    err = capsys.readouterr().err
    line = error_line(err)
    assert f"the work directory (-w/--work-dir) {work} is not writable" in line and line.endswith(WRITE_HINT)
    assert "crash file" not in err and not out.exists() and list(work.iterdir()) == []


def test_out_dir_that_cannot_be_created_has_the_same_hint(tiny_bids, tmp_path, capsys, monkeypatch):
    parent = tmp_path / "ro"
    parent.mkdir()
    with read_only(parent, monkeypatch):
        code = run_cli(tiny_bids, parent / "out", tmp_path / "work", "--participant-label", "01")
    assert code == 73
    line = error_line(capsys.readouterr().err)
    assert f"cannot create OUT_DIR {parent / 'out'}" in line and line.endswith(WRITE_HINT)
    assert list(parent.iterdir()) == [] and not (tmp_path / "work").exists()


# ---------------------------------------------------------------- 3. empty labels
@pytest.mark.parametrize("option, value", [("--participant-label", ""), ("--participant-label", " "),
                                           ("--participant-label", "sub-"), ("--session-label", ""),
                                           ("--session-label", "ses-"), ("-t", ""), ("--task-id", "task-")])
def test_empty_label_is_a_usage_error_not_every_subject(tiny_bids, tmp_path, capsys, option, value):
    before = tree_hash(tiny_bids)
    out, work = tmp_path / "out", tmp_path / "work"
    assert run_cli(tiny_bids, out, work, option, value) == 64
    line = error_line(capsys.readouterr().err)
    assert "empty label" in line and repr(value) in line
    assert not out.exists() and not work.exists()
    assert tree_hash(tiny_bids) == before


def test_empty_label_among_others_is_refused(tiny_bids, tmp_path, capsys):
    assert run_cli(tiny_bids, tmp_path / "out", tmp_path / "work", "--participant-label", "01", "") == 64
    assert "empty label" in error_line(capsys.readouterr().err)
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- 4. --bids-database-dir inside BIDS_DIR
def test_bids_database_dir_inside_bids_dir_exits_64(tiny_bids, tmp_path, capsys):
    bids = copy_dataset(tiny_bids, tmp_path / "bids")
    before = tree_hash(bids)
    out = tmp_path / "out"
    assert run_cli(bids, out, tmp_path / "work", "--bids-database-dir", bids / "code" / "pybids") == 64
    line = error_line(capsys.readouterr().err)
    assert "--bids-database-dir" in line and "inside BIDS_DIR" in line
    assert tree_hash(bids) == before and not (bids / "code").exists()
    assert not out.exists()


# ---------------------------------------------------------------- 5. OUT_DIR of another pipeline
def _foreign_derivatives(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "dataset_description.json").write_text(json.dumps({
        "Name": "fMRIPrep - fMRI PREProcessing workflow", "BIDSVersion": "1.4.0", "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "fMRIPrep", "Version": "23.2.0"}], "Authors": ["Someone"]}, indent=2))
    (root / "sub-01" / "func").mkdir(parents=True)
    (root / "sub-01" / "func" / "sub-01_task-rest_desc-confounds_timeseries.tsv").write_text("a\tb\n1\t2\n")
    return root


def test_out_dir_of_another_pipeline_exits_64_and_is_untouched(tiny_bids, tmp_path, capsys):
    fmriprep = _foreign_derivatives(tmp_path / "fmriprep")
    before = tree_hash(fmriprep)
    assert run_cli(tiny_bids, fmriprep, tmp_path / "work", "--participant-label", "01") == 64
    line = error_line(capsys.readouterr().err)
    assert "made by fMRIPrep" in line
    assert tree_hash(fmriprep) == before and not (tmp_path / "work").exists()


def test_simulation_ground_truth_is_not_an_out_dir(tiny_bids, tmp_path, capsys):
    """The simulator's derivatives are also GeneratedBy spec2vol-bids, but are not a BIDS-App OUT_DIR."""
    bids = copy_dataset(tiny_bids, tmp_path / "bids")
    shutil.copytree(tiny_bids / "derivatives" / "simulation", bids / "derivatives" / "simulation")
    before = tree_hash(bids)
    assert run_cli(bids, bids / "derivatives" / "simulation", tmp_path / "work") == 64
    assert "another dataset" in error_line(capsys.readouterr().err)
    assert tree_hash(bids) == before


def test_bids_derivatives_folder_itself_exits_64(tiny_bids, tmp_path, capsys):
    bids = copy_dataset(tiny_bids, tmp_path / "bids")
    _foreign_derivatives(bids / "derivatives" / "fmriprep")
    before = tree_hash(bids)
    assert run_cli(bids, bids / "derivatives", tmp_path / "work") == 64
    line = error_line(capsys.readouterr().err)
    assert "derivatives itself" in line and str(bids / "derivatives" / "spec2vol") in line
    assert tree_hash(bids) == before and not (bids / "derivatives" / "dataset_description.json").exists()


def test_non_empty_out_dir_without_description_exits_64(tiny_bids, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert run_cli(tiny_bids, out, tmp_path / "work", "--participant-label", "01") == 64
    assert "is not empty (notes.txt)" in error_line(capsys.readouterr().err)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


# ---------------------------------------------------------------- 6. two runs of one participant, one work dir
def test_work_dir_held_by_another_run_of_the_same_participant_exits_75(tiny_bids, tmp_path, capsys):
    import filelock

    out, work = tmp_path / "out", tmp_path / "work"
    work.mkdir()
    held = filelock.FileLock(str(work / ".spec2vol-bids_sub-01.lock"), timeout=0)
    held.acquire()  # another run of sub-01 is processing (flock: held per open file, also within one process)
    try:
        assert run_cli(tiny_bids, out, work, "--participant-label", "01") == 75
        line = error_line(capsys.readouterr().err)
        assert "processing sub-01" in line and str(work / ".spec2vol-bids_sub-01.lock") in line
        assert not out.exists() and derivative_files(out) == []
        # a run of another participant may share the work directory meanwhile
        assert run_cli(tiny_bids, out, work, "--participant-label", "02",
                       "--bids-database-dir", tmp_path / "pybids") == 0
        assert len(derivative_files(out)) == 3 and (tmp_path / "pybids").is_dir()
    finally:
        held.release()
    # the finished run released its lock and removed its owner file: a next run of sub-02 is not blocked
    nxt = filelock.FileLock(str(work / ".spec2vol-bids_sub-02.lock"), timeout=0)
    nxt.acquire()
    nxt.release()
    assert not list(work.glob("*.lock.json"))


def test_clean_workdir_keeps_the_folders_of_other_participants(tmp_path):
    from spec2vol_bids.cli.bidsapp import _clean_work_dir

    wf = tmp_path / "work" / "spec2vol_bids_0_1_wf"
    for s in ("01", "02"):
        (wf / f"sub_{s}_wf" / "node").mkdir(parents=True)
    (wf / "d3.js").write_text("")
    _clean_work_dir(wf, ["01"])  # another participant's run still uses the work directory
    assert sorted(p.name for p in wf.iterdir()) == ["d3.js", "sub_02_wf"]
    _clean_work_dir(wf, ["02"])
    assert not wf.exists() and (tmp_path / "work").is_dir()


# ---------------------------------------------------------------- also: what a wrong path is
def test_model_that_is_a_folder_says_so(tiny_bids, tmp_path, capsys):
    models = tmp_path / "models"
    models.mkdir()
    (models / "model.ckpt").write_bytes(b"")
    code = run_cli(tiny_bids, tmp_path / "out", tmp_path / "work", "--participant-label", "01", "--model", models)
    assert code == 66
    line = error_line(capsys.readouterr().err)
    assert "is a folder, not a checkpoint file" in line and f"--model {models / 'model.ckpt'}" in line
    assert not (tmp_path / "out").exists()


def test_bids_dir_that_is_a_file_says_so(tmp_path, capsys):
    f = tmp_path / "bids.zip"
    f.write_bytes(b"PK")
    assert run_cli(f, tmp_path / "out", tmp_path / "work") == 66
    assert "is a file, not a folder" in error_line(capsys.readouterr().err)
