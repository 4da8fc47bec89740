"""`spec2vol_bids train --fold K` (one fold per job) and `spec2vol_bids train collect MODEL_DIR`: the same tables,
report and model.ckpt as one `--cv loso` run; refusals with their exit codes."""

from __future__ import annotations

import json

import pytest
import torch

from spec2vol_bids.cli.main import main
from spec2vol_bids.train.checkpoint import load_checkpoint

from .conftest import make_derivatives

ARGS = ["--model", "spec2vol", "--preset", "tiny", "--baselines", "ridge", "--cv", "loso", "--epochs", "1",
        "--batch-size", "8", "--accumulation", "1", "--warmup-steps", "1", "--seed", "5", "--device", "cpu",
        "--no-progress", "-q"]


def _science(obj):
    """``obj`` without what depends on the run's machine and folder: durations and checkpoint paths."""
    if isinstance(obj, dict):
        return {k: _science(v) for k, v in obj.items() if k != "checkpoints" and not k.endswith("seconds")}
    if isinstance(obj, list):
        return [_science(v) for v in obj]
    return obj


@pytest.mark.slow
def test_fold_runs_then_collect_equal_one_loso_run(tmp_path, capsys):
    derivs = make_derivatives(tmp_path / "d", subjects=("01", "02", "03"), n_volumes=16)
    whole, split = tmp_path / "whole", tmp_path / "split"
    assert main(["train", str(derivs), str(whole), *ARGS]) == 0
    # folds by index and by name, in any order (as array jobs finish)
    assert main(["train", str(derivs), str(split), *ARGS, "--fold", "2"]) == 0
    assert "train collect" in capsys.readouterr().out
    assert not (split / "metrics.tsv").exists() and not (split / "config.toml").exists()
    # a fold already run is refused without --resume (exit 73)
    assert main(["train", str(derivs), str(split), *ARGS, "--fold", "test-03"]) == 73
    assert "fold test-03 already ran" in capsys.readouterr().err
    # collecting before every fold has run names the missing ones (exit 66)
    assert main(["train", "collect", str(split)]) == 66
    err = capsys.readouterr().err
    assert "2 of 3 folds have not run: 0 (test-01), 1 (test-02)" in err and err.count("\n") == 1
    assert main(["train", str(derivs), str(split), *ARGS, "--fold", "test-01"]) == 0
    assert main(["train", str(derivs), str(split), *ARGS, "--fold", "1"]) == 0
    capsys.readouterr()
    assert main(["train", "collect", str(split)]) == 0
    assert "spec2vol" in capsys.readouterr().out
    for name in ("metrics.tsv", "metrics_summary.tsv"):
        assert (split / name).read_text() == (whole / name).read_text(), name
    mw, ms = json.loads((whole / "metrics.json").read_text()), json.loads((split / "metrics.json").read_text())
    assert _science(ms["folds"]) == _science(mw["folds"]) and ms["main_model"] == mw["main_model"]
    for name in ("report.html", "config.toml", "learning_curves.png"):
        assert (split / name).is_file(), name
    wa, wb = load_checkpoint(whole / "model.ckpt"), load_checkpoint(split / "model.ckpt")
    assert wa["training"]["fold"] == wb["training"]["fold"]
    assert all(torch.equal(wa["state_dict"][k], wb["state_dict"][k]) for k in wa["state_dict"])
    config = (split / "config.toml").read_text()
    assert config.count("--fold") == 3  # the three fold commands are recorded
    # collecting twice, or collecting a whole run, is refused (exit 73)
    assert main(["train", "collect", str(split)]) == 73
    assert main(["train", "collect", str(whole)]) == 73


@pytest.mark.slow
def test_fold_errors_are_one_line_with_exit_codes(tmp_path, capsys):
    derivs = make_derivatives(tmp_path / "d", subjects=("01", "02", "03"), n_volumes=20)
    fast = [a if a != "spec2vol" else "mean" for a in ARGS]
    fast[fast.index("ridge")] = "none"
    assert main(["train", str(derivs), str(tmp_path / "m"), *fast, "--fold", "3"]) == 64
    err = capsys.readouterr().err
    assert "--fold 3 does not exist: --cv loso gives 3 fold(s)" in err and "0=test-01" in err
    assert main(["train", str(derivs), str(tmp_path / "m"), *fast, "--fold", "test-09"]) == 64
    assert "'test-09' is not a fold" in capsys.readouterr().err
    assert main(["train", "collect", str(tmp_path / "nothing")]) == 66
    (tmp_path / "empty").mkdir()
    assert main(["train", "collect", str(tmp_path / "empty")]) == 66
    assert "holds no fold run" in capsys.readouterr().err
    # folds run with different settings are not merged (exit 65)
    assert main(["train", str(derivs), str(tmp_path / "mix"), *fast, "--fold", "0"]) == 0
    assert main(["train", str(derivs), str(tmp_path / "mix"), *fast, "--fold", "1", "--seed", "6"]) == 0
    assert main(["train", str(derivs), str(tmp_path / "mix"), *fast, "--fold", "2"]) == 0
    capsys.readouterr()
    assert main(["train", "collect", str(tmp_path / "mix")]) == 65
    assert "other settings or data" in capsys.readouterr().err
