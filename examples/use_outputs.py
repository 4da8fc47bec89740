"""Use the outputs with the field's tools: PyBIDS, nilearn, MNE-Python and napari.

The script makes a small OUT_DIR first (a simulated 2-subject dataset, the participant level, a ridge model
trained on subject 01, predictions, the group level), then opens it as a neuroimager would:

* PyBIDS finds every derivative by its entities;
* nilearn loads the predicted and measured BOLD and scores them voxel by voxel inside the brain mask;
* MNE-Python opens the EEG spectrogram as an ``EpochsSpectrum`` (one "epoch" per BOLD volume);
* napari opens the images with the plugin's reader.

Run::

    python examples/use_outputs.py [OUT_DIR]              # headless: xvfb-run -a python examples/use_outputs.py

It exits non-zero when a check fails. Needs napari and a Qt binding for the last step
(``pip install "spec2vol-bids[napari]" pyqt6``).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("NIPYPE_NO_ET", "1")


def make_outputs(root: Path) -> tuple[Path, Path]:
    """Simulate, preprocess, train a ridge model on sub-01, predict both subjects, score them: (BIDS_DIR, OUT_DIR)."""
    from spec2vol_bids.cli.main import main as spec2vol_bids
    from spec2vol_bids.simulate import simulate_dataset

    bids = simulate_dataset(root / "bids", preset="tiny", subjects=2, volumes=40, overwrite=True, progress=False)
    out = root / "out"
    for argv in ([str(bids), str(out), "participant", "-w", str(root / "work"), "-q"],
                 ["train", str(out), str(root / "model"), "--model", "ridge", "--baselines", "none", "--cv", "none",
                  "--participant-label", "01", "--select-on", "last", "--no-progress", "-q"],
                 [str(bids), str(out), "participant", "-w", str(root / "work"), "--model",
                  str(root / "model" / "model.ckpt"), "-q"],
                 [str(bids), str(out), "group", "-q"]):
        if spec2vol_bids(argv) != 0:
            raise SystemExit(f"FAILED: spec2vol_bids {' '.join(argv)}")
    return bids, out


def main(root: Path) -> int:
    bids, out = make_outputs(root)
    failures = []

    # --- PyBIDS: the derivatives of OUT_DIR next to the raw dataset -----------------------------------------------
    # [pybids]
    from bids import BIDSLayout

    layout = BIDSLayout(bids, derivatives=out)
    deriv = layout.derivatives["out"]  # named after its folder
    predicted = deriv.get(subject="02", desc="spec2vol", suffix="bold", extension=".nii.gz")[0]
    target = deriv.get(subject="02", desc="target", suffix="bold", extension=".nii.gz")[0]
    mask = deriv.get(subject="02", desc="brain", suffix="mask", extension=".nii.gz")[0]
    spectrogram = deriv.get(subject="02", desc="stft", suffix="spectrogram", extension=".h5")[0]
    meta = predicted.get_metadata()  # the sidecar: VolumeIndices, ModelSHA256, Sources, ...
    print(f"pybids: {len(deriv.get())} files; {predicted.filename}: model {meta['ModelName']}, "
          f"TR {meta['RepetitionTime']} s, {len(meta['VolumeIndices'])} predicted volumes")
    # [/pybids]
    if meta["ModelName"] != "ridge":
        failures.append(f"the prediction's sidecar names model {meta['ModelName']}")

    # --- nilearn: predicted vs measured time courses inside the brain mask ----------------------------------------
    # [nilearn]
    import numpy as np
    from nilearn import image, maskers

    pred_img = image.load_img(predicted.path)                              # (X, Y, Z, n_predicted)
    measured_img = image.index_img(target.path, meta["VolumeIndices"])     # the same volumes of the target
    masker = maskers.NiftiMasker(mask_img=mask.path, standardize=None).fit()
    pred_ts, meas_ts = masker.transform(pred_img), masker.transform(measured_img)  # (time, voxels)
    pred_ts, meas_ts = pred_ts - pred_ts.mean(0), meas_ts - meas_ts.mean(0)
    r = (pred_ts * meas_ts).sum(0) / np.sqrt((pred_ts**2).sum(0) * (meas_ts**2).sum(0))
    r_img = masker.inverse_transform(np.nan_to_num(r))                      # a map of the voxel-wise correlation
    print(f"nilearn: {pred_ts.shape[1]} brain voxels, mean voxel-wise r = {np.nanmean(r):.3f}")
    # [/nilearn]
    table = {row.split("\t")[1]: row.split("\t") for row in (out / "group_metrics.tsv").read_text().splitlines()}
    header = (out / "group_metrics.tsv").read_text().splitlines()[0].split("\t")
    group_r = float(table["sub-02_task-rest"][header.index("dynamic_correlation")])
    if not np.isclose(np.nanmean(r), group_r, atol=1e-4):
        failures.append(f"nilearn's mean r {np.nanmean(r):.5f} differs from group_metrics.tsv's {group_r:.5f}")
    if r_img.shape != pred_img.shape[:3]:
        failures.append(f"the r map has shape {r_img.shape}")

    # --- MNE-Python: the spectrogram as an EpochsSpectrum ---------------------------------------------------------
    # [mne]
    from spec2vol_bids.io import read_spectrogram

    spec = read_spectrogram(spectrogram.path)        # one "epoch" per BOLD volume, channels x frequencies
    print(f"mne: {spec}")
    alpha = spec["valid"].get_data(fmin=8, fmax=12).mean(axis=-1)  # (volumes, channels): alpha band per volume
    targets = spec["target"]                         # the volumes the model predicts (metadata query)
    onsets = spec.events[:, 0] / spec.info["sfreq"]  # volume onsets on the EEG clock (s)
    print(f"mne: alpha band of {alpha.shape[0]} volumes x {alpha.shape[1]} channels; {len(targets)} targets; "
          f"first volume at {onsets[0]:.3f} s")
    # [/mne]
    side = json.loads(Path(spectrogram.path).with_suffix(".json").read_text())
    if not np.allclose(onsets, side["VolumeOnsets"], atol=1.0 / spec.info["sfreq"]):
        failures.append("the MNE events are not the volume onsets of the sidecar")
    if len(targets) != len(meta["VolumeIndices"]):
        failures.append(f"{len(targets)} target volumes in MNE, {len(meta['VolumeIndices'])} predicted")

    # --- napari: the plugin's reader ------------------------------------------------------------------------------
    # [napari]
    import napari

    viewer = napari.Viewer(show=False)
    layers = viewer.open([target.path], plugin="spec2vol-bids") + viewer.open(predicted.path, plugin="spec2vol-bids")
    # (time, z, y, x) in seconds and mm; the prediction starts at its first predicted volume
    print("napari:", ", ".join(f"{layer.name} {layer.data.shape}" for layer in layers))
    # [/napari]
    if [layer.data.ndim for layer in layers] != [4, 4] or layers[1].translate[0] != meta["VolumeIndices"][0] * 2.0:
        failures.append(f"unexpected napari layers {[(ly.data.shape, list(ly.translate)) for ly in layers]}")
    viewer.close()

    for failure in failures:
        print("FAILED:", failure, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    if len(sys.argv) > 1:
        sys.exit(main(Path(sys.argv[1])))
    with tempfile.TemporaryDirectory() as tmp:
        sys.exit(main(Path(tmp)))
