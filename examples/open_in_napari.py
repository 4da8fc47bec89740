"""Open spec2vol-bids outputs in napari: a target BOLD series, a spectrogram and the prediction widget.

The script simulates a one-subject tiny dataset and runs the participant level on it (in ``OUT_DIR``, default a
temporary folder), then opens the derivatives with the plugin's reader (``viewer.open(..., plugin="spec2vol-bids")``)
and docks the *Spec2Vol prediction* widget with the dataset already selected. Choose a checkpoint in the widget
(for example the ``model.ckpt`` written by ``examples/train_from_python.py``) and press *Predict*.

Run::

    python examples/open_in_napari.py [OUT_DIR]                      # interactive napari window
    python examples/open_in_napari.py [OUT_DIR] --screenshot shot.png # save a screenshot and exit (headless: xvfb-run)

Needs napari and a Qt binding: ``pip install "spec2vol-bids[napari]" pyqt6``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("NIPYPE_NO_ET", "1")


def main(out: Path, screenshot: Path | None) -> int:
    import napari
    import numpy as np

    from spec2vol_bids.cli.main import main as spec2vol_bids
    from spec2vol_bids.simulate import simulate_dataset

    bids = simulate_dataset(out / "bids", preset="tiny", subjects=1, volumes=40, overwrite=True, progress=False)
    deriv = bids / "derivatives" / "spec2vol"
    if spec2vol_bids([str(bids), str(deriv), "participant", "-w", str(out / "work")]) != 0:
        print("FAILED: the participant level failed", file=sys.stderr)
        return 1
    target = next((deriv / "sub-01" / "func").glob("*_desc-target_bold.nii.gz"))
    spectrogram = next((deriv / "sub-01" / "eeg").glob("*_desc-stft_spectrogram.h5"))

    viewer = napari.Viewer(title="spec2vol-bids example", show=screenshot is None)
    # the plugin's reader: a 4-D BOLD becomes a (time, z, y, x) image with the NIfTI's voxel sizes, the
    # spectrogram a (channel, window, frequency) image
    layers = viewer.open(target, plugin="spec2vol-bids") + viewer.open(spectrogram, plugin="spec2vol-bids")
    viewer.layers[-1].visible = False  # show the BOLD; tick the spectrogram layer to see it
    # the widget, docked from the plugin manifest as napari's Plugins menu does it
    _, widget = viewer.window.add_plugin_dock_widget("spec2vol-bids", "Spec2Vol prediction")
    widget.bids_dir.value = str(bids)
    widget.output_dir.value = str(out / "napari_predictions")

    print("layers:", ", ".join(f"{layer.name} {layer.data.shape}" for layer in layers))
    failures = []
    if len(layers) != 2 or layers[0].data.ndim != 4:
        failures.append(f"expected a 4-D BOLD layer and a spectrogram layer, got {[ly.data.shape for ly in layers]}")
    if screenshot is not None:
        import time

        from qtpy.QtWidgets import QApplication

        deadline = time.monotonic() + 20  # let the widget index the dataset in its background thread
        while widget.indexing and time.monotonic() < deadline:
            QApplication.processEvents()
            time.sleep(0.05)
        QApplication.processEvents()
        img = viewer.screenshot(str(screenshot), canvas_only=False, flash=False)
        print(f"screenshot {img.shape} -> {screenshot}")
        if np.asarray(img).std() == 0:
            failures.append("the screenshot is blank")
        viewer.close()
    else:
        napari.run()
    for msg in failures:
        print("FAILED:", msg, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", nargs="?", type=Path, help="output folder (default: a temporary folder)")
    parser.add_argument("--screenshot", type=Path, help="save a screenshot of the window there and exit")
    args = parser.parse_args()
    if args.out is not None:
        args.out = args.out.absolute()
        args.out.mkdir(parents=True, exist_ok=True)
        sys.exit(main(args.out, args.screenshot))
    with tempfile.TemporaryDirectory(prefix="spec2vol_napari_") as tmp:
        sys.exit(main(Path(tmp), args.screenshot))
