"""Same seed, same bytes; different seeds differ; bad arguments are refused and nothing is written."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spec2vol_bids.cli.main import main
from spec2vol_bids.errors import CantCreateError, UsageError
from spec2vol_bids.simulate import PRESETS, simulate_dataset
from spec2vol_bids.simulate import dataset as dataset_mod

pytestmark = pytest.mark.slow  # simulated datasets: the full suite only

SMALL = {"preset": "tiny", "subjects": 1, "volumes": 12, "progress": False}


def _digest(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def two_runs_seed3(tmp_path_factory):
    base = tmp_path_factory.mktemp("determinism")
    return (simulate_dataset(base / "a", seed=3, **SMALL), simulate_dataset(base / "b", seed=3, **SMALL),
            simulate_dataset(base / "c", seed=4, **SMALL))


def test_same_seed_same_bytes(two_runs_seed3):
    a, b, _ = two_runs_seed3
    da, db = _digest(a), _digest(b)
    assert da.keys() == db.keys()
    assert len(da) > 20
    differ = [k for k in da if da[k] != db[k]]
    assert differ == []


def test_different_seed_differs(two_runs_seed3):
    a, _, c = two_runs_seed3
    da, dc = _digest(a), _digest(c)
    assert da.keys() == dc.keys()  # same layout
    for key in ("sub-01/eeg/sub-01_task-rest_eeg.eeg", "sub-01/func/sub-01_task-rest_bold.nii.gz",
                "derivatives/simulation/sub-01/func/sub-01_task-rest_desc-sources_timeseries.tsv"):
        assert da[key] != dc[key], key
    pa = json.loads((a / "derivatives/simulation/sub-01/func/sub-01_task-rest_desc-simulation_params.json")
                    .read_text())
    pc = json.loads((c / "derivatives/simulation/sub-01/func/sub-01_task-rest_desc-simulation_params.json")
                    .read_text())
    assert (pa["Seed"], pc["Seed"]) == (3, 4)
    assert pa["FirstVolumeOnset"] != pc["FirstVolumeOnset"]


def test_subject_streams_do_not_depend_on_dataset_size(two_runs_seed3, tmp_path):
    """Subject 01 of a 2-subject dataset is identical to subject 01 of a 1-subject dataset (same seed)."""
    a, _, _ = two_runs_seed3
    big = simulate_dataset(tmp_path / "big", seed=3, **{**SMALL, "subjects": 2})
    da, dbig = _digest(a), _digest(big)
    for key in ("sub-01/eeg/sub-01_task-rest_eeg.eeg", "sub-01/func/sub-01_task-rest_bold.nii.gz"):
        assert da[key] == dbig[key]
    assert (big / "sub-02/func/sub-02_task-rest_bold.nii.gz").is_file()


def _leftovers(parent: Path, name: str) -> list[Path]:
    return [p for p in parent.iterdir() if p.name.startswith(f".{name}.")]


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"subjects": 0}, UsageError, "subjects must be at least 1"),
    ({"volumes": 1}, UsageError, "At least 2 volumes"),
    ({"runs": 0}, UsageError, "runs must be at least 1"),
    ({"preset": "nope"}, UsageError, "Unknown preset 'nope'"),
    ({"seed": -1}, UsageError, "seed must be a non-negative"),
    ({"subjects": 1.5}, UsageError, "must be a whole number"),
])
def test_bad_arguments_write_nothing(tmp_path, kwargs, error, match):
    out = tmp_path / "ds"
    with pytest.raises(error, match=match):
        simulate_dataset(out, **{**SMALL, **kwargs})
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_non_empty_out_dir_is_refused_then_overwritten(tmp_path):
    out = tmp_path / "ds"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    with pytest.raises(CantCreateError, match="exists and is not empty"):
        simulate_dataset(out, **SMALL)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert _leftovers(tmp_path, "ds") == []
    simulate_dataset(out, overwrite=True, **SMALL)
    assert not (out / "keep.txt").exists()
    assert (out / "dataset_description.json").is_file()
    assert _leftovers(tmp_path, "ds") == []


def test_empty_out_dir_is_accepted(tmp_path):
    out = tmp_path / "ds"
    out.mkdir()
    simulate_dataset(out, **SMALL)
    assert (out / "participants.tsv").is_file()


def test_out_dir_that_is_a_file_is_refused(tmp_path):
    out = tmp_path / "ds"
    out.write_text("x")
    with pytest.raises(CantCreateError, match="not a folder"):
        simulate_dataset(out, overwrite=True, **SMALL)
    assert out.read_text() == "x"


def test_interrupted_run_leaves_nothing(tmp_path, monkeypatch):
    calls = {"n": 0}
    original = dataset_mod._Simulation._write_bold

    def failing(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(dataset_mod._Simulation, "_write_bold", failing)
    out = tmp_path / "ds"
    with pytest.raises(KeyboardInterrupt):
        simulate_dataset(out, **{**SMALL, "subjects": 2})
    assert calls["n"] == 2
    assert list(tmp_path.iterdir()) == []


def test_interrupted_overwrite_keeps_the_old_dataset(tmp_path, monkeypatch):
    out = tmp_path / "ds"
    out.mkdir()
    (out / "keep.txt").write_text("precious")

    def boom(self, *args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(dataset_mod._Simulation, "_write_ceiling", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        simulate_dataset(out, overwrite=True, **SMALL)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert _leftovers(tmp_path, "ds") == []


def test_cli_simulate(tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(["simulate", str(out), "--subjects", "2", "--volumes", "10", "--seed", "5", "--no-progress"])
    assert code == 0
    assert "wrote" in capsys.readouterr().out
    parts = pd.read_csv(out / "participants.tsv", sep="\t")
    assert list(parts["participant_id"]) == ["sub-01", "sub-02"]
    params = json.loads((out / "derivatives/simulation/sub-02/func/sub-02_task-rest_desc-simulation_params.json")
                        .read_text())
    assert params["Seed"] == 5 and params["NumberOfVolumes"] == 10
    # a second time without --overwrite: one-line error, exit code 73, dataset untouched
    before = _digest(out)
    code = main(["simulate", str(out), "--subjects", "1", "--no-progress"])
    err = capsys.readouterr().err
    assert code == CantCreateError.exit_code == 73
    assert err.count("\n") == 1 and "--overwrite" in err
    assert _digest(out) == before


@pytest.mark.parametrize("argv", [["--subjects", "0"], ["--preset", "huge"], ["--volumes", "x"]])
def test_cli_rejects_bad_values(tmp_path, argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["simulate", str(tmp_path / "x"), *argv])
    assert exc.value.code == 2
    assert not (tmp_path / "x").exists()


def test_cli_help_lists_presets(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["simulate", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for name in PRESETS:
        assert name in out


def test_volumes_override_changes_marker_count(two_runs_seed3):
    a, _, _ = two_runs_seed3
    events = pd.read_csv(a / "sub-01/eeg/sub-01_task-rest_events.tsv", sep="\t")
    assert int(np.sum(events["trial_type"] == "Response/R128")) == 12


def test_missing_parent_folders_are_created(tmp_path):
    out = tmp_path / "a" / "b" / "ds"
    simulate_dataset(out, **{**SMALL, "volumes": 4})
    assert (out / "dataset_description.json").is_file()
    assert sorted(p.name for p in out.parent.iterdir()) == ["ds"]
