"""Train and evaluate on participant-level derivatives from Python.

Steps:

1. simulate a tiny 3-subject EEG-fMRI BIDS dataset and run the BIDS-App's participant level on it (the same
   ``spec2vol_bids`` command line, called in-process with :func:`spec2vol_bids.cli.main.main`);
2. cross-validate the ``mean`` and ``ridge`` baselines and a 1-epoch tiny Spec2VolCAMU-Net with
   :class:`spec2vol_bids.pipeline.training.Experiment` (subject 03 held out for testing, 02 for epoch selection);
3. load the saved checkpoint with :func:`spec2vol_bids.train.checkpoint.load_checkpoint` and predict the test
   subject's volumes from its spectrogram with :func:`spec2vol_bids.train.predict.predict_windows`.

Run::

    python examples/train_from_python.py [OUT_DIR] [--no-spec2vol]

(default OUT_DIR: a temporary folder). It takes well under a minute on a laptop CPU and exits non-zero when a
check fails. One epoch on 3 x 14 pairs teaches the network nothing: this shows the API, not the quality (see the
benchmarks page for trained results).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("NIPYPE_NO_ET", "1")


def main(out: Path, *, spec2vol: bool = True) -> int:
    import numpy as np

    from spec2vol_bids.cli.main import main as spec2vol_bids
    from spec2vol_bids.pipeline.training import Experiment
    from spec2vol_bids.simulate import simulate_dataset
    from spec2vol_bids.train.checkpoint import check_compatible, load_checkpoint
    from spec2vol_bids.train.loop import TrainConfig
    from spec2vol_bids.train.predict import predict_windows, windows_from_spectrogram

    failures: list[str] = []

    # 1. data: 3 subjects x 40 volumes -> 14 (window group, volume) pairs per subject
    bids = simulate_dataset(out / "bids", preset="tiny", subjects=3, volumes=40, overwrite=True, progress=False)
    deriv = bids / "derivatives" / "spec2vol"
    code = spec2vol_bids([str(bids), str(deriv), "participant", "-w", str(out / "work")])
    if code != 0:
        print(f"FAILED: the participant level exited with {code}", file=sys.stderr)
        return 1

    # 2. training: TrainConfig holds the settings of the main model; the baselines share seed, device and batches
    cfg = TrainConfig(model="spec2vol" if spec2vol else "ridge", preset="tiny", epochs=1, batch_size=8,
                      accumulation=1, warmup_steps=2, lr=3e-3, seed=0, device="cpu")
    exp = Experiment(deriv, out / "model", cfg=cfg, cv="split", test_subjects=["03"], val_subjects=["02"],
                     baselines=["mean", "ridge"])
    results = exp.run(progress=False)
    print(f"\n{'model':<10} {'test SSIM':>10} {'PSNR (dB)':>10} {'dyn. r':>8}")
    for res in results:
        test = res["results"]["best"]["test"]
        print(f"{res['model']:<10} {test['ssim']:>10.4f} {test['psnr']:>10.2f} {test['dyncorr']:>8.3f}")
        if not np.isfinite(test["ssim"]):
            failures.append(f"{res['model']}: test SSIM is not finite")
    if sorted(r["model"] for r in results) != sorted({cfg.model, "mean", "ridge"}):
        failures.append(f"unexpected models {[r['model'] for r in results]}")
    for name in ("config.toml", "model.ckpt", "report.html"):
        if not (out / "model" / name).is_file():
            failures.append(f"no {name} in {out / 'model'}")

    # 3. the saved checkpoint carries the model, its input scaling, channels, frequencies and grid
    ckpt = load_checkpoint(out / "model" / "model.ckpt")
    spec = next((deriv / "sub-03" / "eeg").glob("*_desc-stft_spectrogram.h5"))
    x, targets, info = windows_from_spectrogram(spec)  # x: [pairs, windows, channels, frequencies]
    check_compatible(ckpt, channels=info["channels"], frequencies=info["frequencies"])  # raises on a mismatch
    pred = predict_windows(ckpt, x, device="cpu", progress=False)  # [pairs, slices, X, Y]
    print(f"\nmodel.ckpt: {ckpt['model']['name']}; predicted {pred.shape[0]} volumes of shape {pred.shape[1:]} "
          f"for volumes {targets[0]}..{targets[-1]} of {spec.name}")
    if pred.shape[0] != x.shape[0] or not np.isfinite(pred).all():
        failures.append(f"bad prediction: shape {pred.shape}, finite {np.isfinite(pred).all()}")

    for msg in failures:
        print("FAILED:", msg, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    with_spec2vol = "--no-spec2vol" not in sys.argv
    if args:
        out_dir = Path(args[0]).absolute()
        out_dir.mkdir(parents=True, exist_ok=True)
        sys.exit(main(out_dir, spec2vol=with_spec2vol))
    with tempfile.TemporaryDirectory(prefix="spec2vol_train_") as tmp:
        sys.exit(main(Path(tmp), spec2vol=with_spec2vol))
