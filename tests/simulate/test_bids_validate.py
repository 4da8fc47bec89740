"""spec2vol_bids.bids.validate: the bids-validator-deno wrapper (tested here on simulated datasets)."""

from __future__ import annotations

import json
import shutil
import stat

import pytest

from spec2vol_bids.bids import validate
from spec2vol_bids.bids.validate import run_validator, validator_available
from spec2vol_bids.errors import NoInputError, SoftwareError
from spec2vol_bids.simulate import simulate_dataset

from ..tools import needs

pytestmark = pytest.mark.slow  # simulations and the validator: the full suite only

needs_validator = needs(validator_available, "bids-validator-deno")


@pytest.fixture(scope="module")
def small_bids(tmp_path_factory):
    return simulate_dataset(tmp_path_factory.mktemp("val") / "ds", subjects=1, volumes=8, progress=False)


@needs_validator
def test_clean_dataset_and_derivatives(small_bids):
    report = run_validator(small_bids)
    assert report.ok and report.errors == [] and report.returncode == 0
    assert report.warnings  # mne-bids output always lacks a few recommended keys
    assert report.summary_info["subjects"] == ["01"]
    assert "0 error(s)" in report.summary()
    # the ground truth is a valid derivative dataset once its .bidsignore applies (validated on its own)
    deriv = run_validator(small_bids / "derivatives" / "simulation")
    assert deriv.ok, deriv.summary()
    # --recursive reports derivative issues located from the root; the validator ignores a derivative's
    # .bidsignore in that mode, so only the documented non-BIDS ground-truth files are flagged
    rec = run_validator(small_bids, recursive=True)
    assert rec.errors and not rec.ok
    assert all(e.location.startswith("/derivatives/simulation/") for e in rec.errors)
    flagged = {e.location.rsplit("/", 1)[-1] for e in rec.errors}
    assert all(any(tag in name for tag in ("noise_ceiling", "simulation_params", "sources_timeseries",
                                           "sources_map")) for name in flagged), flagged


@needs_validator
def test_broken_copy_reports_errors_and_ignore_list(small_bids, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(small_bids, broken)
    sidecar = broken / "sub-01/func/sub-01_task-rest_bold.json"
    sidecar.write_text(json.dumps({"RepetitionTime": 2.0}))
    (broken / "task-rest_bold.json").unlink()  # TaskName is now missing everywhere
    (broken / "sub-01/func/sub-01_task-rest_blod.nii.gz").write_bytes(b"")
    report = run_validator(broken)
    assert not report.ok and report.returncode == 16
    assert {"SIDECAR_KEY_REQUIRED", "NOT_INCLUDED"} <= set(report.codes("error"))
    missing = [e for e in report.errors if e.code == "SIDECAR_KEY_REQUIRED"]
    assert any(e.sub_code == "TaskName" for e in missing)
    assert all(e.location.startswith("/") for e in report.errors)
    # ignore by code, and by CODE[subCode]
    relaxed = run_validator(broken, ignore=("NOT_INCLUDED", "EMPTY_FILE", "NIFTI_HEADER_UNREADABLE",
                                            "SIDECAR_KEY_REQUIRED[TaskName]"))
    assert relaxed.ok, relaxed.summary()
    assert {i.code for i in relaxed.ignored} >= {"NOT_INCLUDED", "SIDECAR_KEY_REQUIRED"}
    only_warnings = run_validator(broken, ignore_warnings=True)
    assert only_warnings.warnings == [] and only_warnings.errors


@needs_validator
def test_ignore_one_warning_sub_code(small_bids):
    full = run_validator(small_bids)
    target = next(w for w in full.warnings if w.sub_code)
    key = f"{target.code}[{target.sub_code}]"
    report = run_validator(small_bids, ignore=(key,))
    assert all(f"{w.code}[{w.sub_code}]" != key for w in report.warnings)
    assert len(report.warnings) < len(full.warnings)
    assert report.ignored and all(f"{i.code}[{i.sub_code}]" == key for i in report.ignored)


def test_validator_not_installed(monkeypatch, tmp_path):
    monkeypatch.setattr(validate, "find_validator", lambda: None)
    assert validator_available() is False
    with pytest.raises(NoInputError, match="not installed.*pip install bids-validator-deno"):
        run_validator(tmp_path)


def test_not_a_folder(tmp_path):
    with pytest.raises(NoInputError, match="not a folder"):
        run_validator(tmp_path / "missing")


def test_validator_output_that_is_not_json(monkeypatch, tmp_path):
    fake = tmp_path / "fake-validator"
    fake.write_text("#!/bin/sh\necho 'Segmentation fault' >&2\nexit 3\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setattr(validate, "find_validator", lambda: fake)
    with pytest.raises(SoftwareError, match="exited with code 3 without a JSON report.*Segmentation fault"):
        run_validator(tmp_path)


def test_find_validator_prefers_the_environment(monkeypatch, tmp_path):
    exe = tmp_path / "bin" / validate.EXECUTABLE
    exe.parent.mkdir()
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    monkeypatch.setattr(validate.sys, "executable", str(tmp_path / "bin" / "python"))
    assert validate.find_validator() == exe
    monkeypatch.setattr(validate.sys, "executable", str(tmp_path / "nowhere" / "python"))
    monkeypatch.setenv("PATH", str(exe.parent))
    assert validate.find_validator() == exe
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert validate.find_validator() is None
