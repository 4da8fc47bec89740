"""`spec2vol_bids train` on real BIDS-App derivatives of the simulated ``tiny`` dataset."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from spec2vol_bids.cli.main import main
from spec2vol_bids.train.checkpoint import check_compatible, load_checkpoint
from spec2vol_bids.train.predict import predict_windows, windows_from_spectrogram


@pytest.mark.slow
def test_loso_on_simulated_derivatives_beats_mean_volume(tiny_bids, tiny_derivatives, tmp_path):
    ceiling_tsv = tiny_bids / "derivatives" / "simulation" / "noise_ceiling.tsv"
    out = tmp_path / "model"
    rc = main(["train", str(tiny_derivatives), str(out), "--model", "ridge", "--baselines", "mean",
               "--cv", "loso", "--seed", "0", "--noise-ceiling", str(ceiling_tsv), "--no-progress"])
    assert rc == 0
    summ = {(r["model"], r["checkpoint"], r["split"]): r
            for r in csv.DictReader((out / "metrics_summary.tsv").open(), delimiter="\t")}
    ridge = float(summ[("ridge", "last", "test")]["dyncorr_mean"])
    mean = float(summ[("mean", "last", "test")]["dyncorr_mean"])
    meta = json.loads((out / "metrics.json").read_text())
    ceiling = meta["noise_ceiling"]
    # the oracle ceiling from the simulator's own table (independent of train's reader)
    rows = list(csv.DictReader(ceiling_tsv.open(), delimiter="\t"))
    assert ceiling["dyncorr"] == pytest.approx(np.mean([float(r["dynamic_correlation"]) for r in rows]))
    assert mean == 0.0
    assert ridge > 0.05, f"ridge dynamic r {ridge:.3f} (noise ceiling {ceiling['dyncorr']:.3f})"
    assert ridge < ceiling["dyncorr"]
    per_fold = [r for r in meta["rows"] if r["model"] == "ridge" and r["split"] == "test" and
                r["checkpoint"] == "last"]
    assert len(per_fold) == 4 and np.mean([r["dyncorr"] > 0 for r in per_fold]) >= 0.75
    assert "noise ceiling" in (out / "report.html").read_text()
    # model.ckpt applies to the BIDS-App's spectrogram files through the public predict API
    ck = load_checkpoint(out / "model.ckpt")
    spec = next(tiny_derivatives.rglob("sub-01_*_desc-stft_spectrogram.h5"))
    x, targets, info = windows_from_spectrogram(spec)
    check_compatible(ck, channels=info["channels"], frequencies=info["frequencies"], grid=ck.grid_shape)
    pred = predict_windows(ck, x[:3], device="cpu", progress=False)
    assert pred.shape == (3, 8, 64, 64) and np.isfinite(pred).all()
