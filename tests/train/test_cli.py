"""`spec2vol_bids train` end to end: outputs, labels, refusals with exit codes, lazy imports."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest
import torch

from spec2vol_bids.cli.main import main
from spec2vol_bids.train.checkpoint import load_checkpoint

from .conftest import make_derivatives, write_run


def _tsv(path):
    return list(csv.DictReader(path.open(), delimiter="\t"))


@pytest.mark.slow
def test_train_loso_closed_form_outputs(tmp_path, capsys):
    derivs = make_derivatives(tmp_path / "d", subjects=("01", "02", "03"), n_volumes=24)
    out = tmp_path / "model"
    rc = main(["train", str(derivs), str(out), "--model", "ridge", "--baselines", "mean", "--cv", "loso",
               "--seed", "3", "--no-progress"])
    assert rc == 0
    for name in ("config.toml", "metrics.tsv", "metrics_summary.tsv", "metrics.json", "report.html",
                 "model.ckpt", "example_slices.png"):
        assert (out / name).is_file(), name
    rows = _tsv(out / "metrics.tsv")
    # 3 folds x 2 models x 2 checkpoints x 2 splits
    assert len(rows) == 24 and {r["model"] for r in rows} == {"ridge", "mean"}
    test_rows = [r for r in rows if r["split"] == "test" and r["checkpoint"] == "last"]
    assert sorted(r["subjects"] for r in test_rows if r["model"] == "ridge") == ["01", "02", "03"]
    assert all(r["protocol"] == "validation-selected" for r in rows)
    summ = {(r["model"], r["checkpoint"], r["split"]): r for r in _tsv(out / "metrics_summary.tsv")}
    assert float(summ[("ridge", "last", "test")]["dyncorr_mean"]) > 0.2
    assert float(summ[("mean", "last", "test")]["dyncorr_mean"]) == 0.0
    # model.ckpt is the first fold's ridge checkpoint, usable on its own
    ck = load_checkpoint(out / "model.ckpt")
    assert ck.model_name == "ridge" and ck["training"]["fold"]["test"] == ["01"]
    assert ck.channels == [f"E{i:02d}" for i in range(6)] and ck.grid_shape == (64, 64, 2)
    assert ck["scaling"]["method"] == "train-minmax" and "01" not in ck["scaling"]["subjects"]
    html = (out / "report.html").read_text()
    assert "ridge" in html and "mean" in html and "validation-selected" in html
    meta = json.loads((out / "metrics.json").read_text())
    assert meta["main_model"] == "ridge" and len(meta["folds"]) == 6
    assert "ridge" in capsys.readouterr().out
    # a second run into the same folder is refused (exit 73) unless --resume
    assert main(["train", str(derivs), str(out), "--model", "ridge", "--no-progress"]) == 73
    assert "already holds a training run" in capsys.readouterr().err


@pytest.mark.slow
def test_train_split_spec2vol_paper_protocol_labelled(tmp_path):
    derivs = make_derivatives(tmp_path / "d", subjects=("01", "02", "03"), n_volumes=20)
    out = tmp_path / "m"
    rc = main(["train", str(derivs), str(out), "--model", "spec2vol", "--preset", "tiny", "--baselines", "none",
               "--cv", "split", "--test-subjects", "03", "--select-on", "test", "--normalization", "global-leaky",
               "--schedule", "official", "--epochs", "1", "--batch-size", "8", "--warmup-steps", "1",
               "--device", "cpu", "--no-progress"])
    assert rc == 0
    rows = _tsv(out / "metrics.tsv")
    assert rows and all("test-selected" in r["protocol"] for r in rows)
    assert "TEST subjects" in (out / "report.html").read_text()
    ck = load_checkpoint(out / "model.ckpt")
    assert ck["scaling"]["method"] == "global-leaky" and ck["scaling"]["subjects"] == ["01", "02", "03"]
    assert ck["training"]["schedule"]["kind"] == "official"
    assert (out / "learning_curves.png").stat().st_size > 1000


def test_refusals_exit_codes(tmp_path, capsys):
    assert main(["train", str(tmp_path / "missing"), str(tmp_path / "m1"), "--no-progress"]) == 66
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["train", str(tmp_path / "empty"), str(tmp_path / "m2"), "--no-progress"]) == 66
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "participant" in err  # one line saying what to do
    derivs = make_derivatives(tmp_path / "d", subjects=("01", "02"))
    write_run(derivs, "03", channels=[f"E{i:02d}" for i in range(5)] + ["ECG"])
    assert main(["train", str(derivs), str(tmp_path / "m3"), "--no-progress"]) == 65
    assert "channels" in capsys.readouterr().err
    assert main(["train", str(derivs), str(derivs), "--no-progress"]) == 64
    good = make_derivatives(tmp_path / "g", subjects=("01", "02", "03"), n_volumes=20)
    assert main(["train", str(good), str(tmp_path / "m4"), "--cv", "split", "--no-progress"]) == 64
    assert "needs --test-subjects" in capsys.readouterr().err


@pytest.mark.slow
def test_tampered_resume_state_refused(tmp_path, capsys):
    derivs = make_derivatives(tmp_path / "d", subjects=("01", "02", "03"), n_volumes=20)
    out = tmp_path / "m"
    args = ["train", str(derivs), str(out), "--model", "spec2vol", "--preset", "tiny", "--baselines", "none",
            "--cv", "split", "--test-subjects", "03", "--epochs", "1", "--batch-size", "8", "--device", "cpu",
            "--no-progress"]
    assert main(args) == 0
    resume = next(out.rglob("resume.ckpt"))
    state = torch.load(resume, weights_only=True)
    key = next(iter(state["state_dict"]))
    state["state_dict"][key].add_(0.01)
    torch.save(state, resume)
    assert main(args + ["--resume"]) == 65
    assert "SHA-256" in capsys.readouterr().err


def test_help_does_not_import_torch():
    code = ("import sys; from spec2vol_bids.cli import train; train.build_parser().format_help(); "
            "print('torch' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "False"


def test_train_on_official_h5_files(tmp_path):
    import h5py
    import numpy as np

    rng = np.random.default_rng(0)
    files = []
    for s in ("sub-32", "sub-35", "sub-36"):
        p = tmp_path / f"{s}.h5"
        with h5py.File(p, "w") as f:
            f["eeg"] = rng.standard_normal((12, 20, 4, 249)).astype(np.float32)
            f["fmri"] = rng.random((12, 2, 64, 64)).astype(np.float32)
        files.append(str(p))
    out = tmp_path / "m"
    rc = main(["train", "-", str(out), "--official-h5", *files, "--model", "mean", "--baselines", "none",
               "--cv", "split", "--test-subjects", "36", "--no-progress"])
    assert rc == 0
    ck = load_checkpoint(out / "model.ckpt")
    assert ck["training"]["data"]["source"]["kind"] == "official-h5"
    assert ck.frequencies is None and ck.channels == ["ch000", "ch001", "ch002", "ch003"]
    # the mean volume of the two training files' fmri arrays (independent oracle: h5py directly)
    train = [f for f in files if "sub-36" not in f and f"sub-{ck['training']['fold']['val'][0]}" not in f]
    with h5py.File(train[0]) as f:
        oracle = f["fmri"][()].mean(0)
    np.testing.assert_allclose(ck["state_dict"]["mean"].numpy(), oracle, atol=1e-6)


def test_deriv_dir_that_is_a_file_says_so(tmp_path, capsys):
    f = tmp_path / "sub-01_task-rest_desc-stft_spectrogram.h5"
    f.write_bytes(b"")
    assert main(["train", str(f), str(tmp_path / "m"), "--no-progress"]) == 66
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is a file, not a folder" in err and "does not exist" not in err
    assert not (tmp_path / "m").exists()


def test_one_subject_loso_advice_is_a_command_that_works(tmp_path, capsys):
    """With one subject, --cv loso used to advise --select-on last, which failed with the same advice."""
    derivs = make_derivatives(tmp_path / "d", subjects=("01",), n_volumes=24)
    args = ["train", str(derivs), str(tmp_path / "m1"), "--model", "ridge", "--baselines", "none", "--no-progress"]
    assert main(args) == 64
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--cv loso needs at least 2 subjects" in err
    advice = "--cv none --select-on last"
    assert advice in err and not (tmp_path / "m1").exists()
    assert main(args[:2] + [str(tmp_path / "m2")] + args[3:] + advice.split()) == 0
    assert (tmp_path / "m2" / "model.ckpt").is_file()
    # two subjects: the validation subject cannot be spared; the advised --select-on last works
    two = make_derivatives(tmp_path / "d2", subjects=("01", "02"), n_volumes=24)
    args = ["train", str(two), str(tmp_path / "m3"), "--model", "ridge", "--baselines", "none", "--no-progress"]
    assert main(args) == 64
    err = capsys.readouterr().err
    assert "cannot spare 1 for validation" in err and "--select-on last" in err
    assert main(args + ["--select-on", "last"]) == 0
