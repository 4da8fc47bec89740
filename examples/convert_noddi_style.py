"""Convert a NODDI-style (non-BIDS) EEG-fMRI folder into BIDS with mne-bids, so spec2vol-bids can read it.

The official Spec2VolCAMU-Net code reads the NODDI dataset in its original layout::

    NODDI/
      EEG/<id>/export/<anything>.vhdr (+ .vmrk, .eeg)   BrainVision, scanner volume markers "R128"
      fMRI/<id>/<anything>_cross.nii.gz                  4-D BOLD series

This script converts such a folder into a BIDS dataset:

* the EEG with :func:`mne_bids.write_raw_bids` (BrainVision files are copied, the R128 markers stay in the
  ``.vmrk`` file and are also listed in ``events.tsv``);
* the BOLD copied to ``sub-<id>/func/sub-<id>_task-<task>_bold.nii.gz`` with a ``bold.json`` sidecar holding
  ``RepetitionTime`` (from the NIfTI header unless ``--tr`` is given) and ``TaskName``.

**On your own download**::

    python examples/convert_noddi_style.py --source /data/NODDI --bids /data/noddi_bids --task rest --tr 2.1
    spec2vol_bids /data/noddi_bids /data/noddi_bids/derivatives/spec2vol participant

Without ``--source`` (as in the test suite) it first FABRICATES a small NODDI-style folder from a simulated
dataset, converts it into ``OUT_DIR/bids`` (``OUT_DIR`` default: a temporary folder) and checks that the
BIDS-App's participant level accepts the result; the exit code is non-zero when a check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("NIPYPE_NO_ET", "1")


def fabricate_noddi_folder(out: Path, *, subjects: int = 2) -> Path:
    """Write a NODDI-style folder (``EEG/<id>/export/*.vhdr``, ``fMRI/<id>/*_cross.nii.gz``) from simulated data."""
    from mne_bids.copyfiles import copyfile_brainvision

    from spec2vol_bids.simulate import simulate_dataset

    sim = simulate_dataset(out / "simulated_bids", preset="tiny", subjects=subjects, volumes=40, overwrite=True,
                           progress=False)
    root = out / "NODDI"
    for sub in sorted(p.name for p in sim.glob("sub-*")):
        subject_id = f"320{sub[-2:]}"  # NODDI-like numeric ids
        (root / "EEG" / subject_id / "export").mkdir(parents=True, exist_ok=True)
        (root / "fMRI" / subject_id).mkdir(parents=True, exist_ok=True)
        vhdr = next((sim / sub / "eeg").glob("*_eeg.vhdr"))
        # copyfile_brainvision renames the three BrainVision files and rewrites the pointers between them
        copyfile_brainvision(vhdr, root / "EEG" / subject_id / "export" / f"{subject_id}_eyesopen.vhdr",
                             verbose=False)
        bold = next((sim / sub / "func").glob("*_bold.nii.gz"))
        shutil.copyfile(bold, root / "fMRI" / subject_id / f"{subject_id}_cross.nii.gz")
    return root


def convert(source: Path, bids_root: Path, *, task: str = "rest", tr: float | None = None,
            line_freq: float = 50.0) -> list[str]:
    """Convert ``source`` (NODDI layout) into the BIDS dataset ``bids_root``; return the BIDS subject labels."""
    import mne
    import nibabel as nib
    from mne_bids import BIDSPath, write_raw_bids

    labels = []
    for eeg_dir in sorted((source / "EEG").iterdir()):
        subject_id = eeg_dir.name
        label = "".join(c for c in subject_id if c.isalnum())  # BIDS labels are alphanumeric
        vhdrs = sorted((eeg_dir / "export").glob("*.vhdr"))
        bolds = sorted((source / "fMRI" / subject_id).glob("*_cross.nii.gz"))
        if len(vhdrs) != 1 or len(bolds) != 1:
            print(f"skipping {subject_id}: {len(vhdrs)} .vhdr and {len(bolds)} *_cross.nii.gz files", file=sys.stderr)
            continue
        # EEG: mne-bids writes eeg.json, channels.tsv, events.tsv (the R128 markers) and copies the BrainVision files
        raw = mne.io.read_raw_brainvision(vhdrs[0], preload=False, verbose="error")
        raw.info["line_freq"] = line_freq  # required by BIDS; 50 Hz in Europe, 60 Hz in the Americas
        bids_path = BIDSPath(subject=label, task=task, datatype="eeg", root=bids_root)
        write_raw_bids(raw, bids_path, overwrite=True, verbose="error")
        # BOLD: a plain copy with its sidecar; the TR from the header unless given
        img = nib.load(bolds[0])
        rep_time = float(tr) if tr is not None else float(img.header.get_zooms()[3])
        func = bids_root / f"sub-{label}" / "func"
        func.mkdir(parents=True, exist_ok=True)
        stem = f"sub-{label}_task-{task}_bold"
        shutil.copyfile(bolds[0], func / f"{stem}.nii.gz")
        (func / f"{stem}.json").write_text(json.dumps({"RepetitionTime": rep_time, "TaskName": task}, indent=2))
        labels.append(label)
    return labels


def check(bids_root: Path, labels: list[str], work: Path) -> list[str]:
    """Check that pybids pairs the runs and that the BIDS-App's participant level accepts the dataset."""
    from bids import BIDSLayout

    from spec2vol_bids.cli.main import main as spec2vol_bids

    failures = []
    layout = BIDSLayout(bids_root, validate=False)
    for label in labels:
        eeg = layout.get(subject=label, datatype="eeg", suffix="eeg", extension=".vhdr")
        bold = layout.get(subject=label, datatype="func", suffix="bold", extension=".nii.gz")
        print(f"sub-{label}: {len(eeg)} EEG run(s), {len(bold)} BOLD run(s)")
        if len(eeg) != 1 or len(bold) != 1:
            failures.append(f"sub-{label}: expected one EEG and one BOLD run")
    deriv = work / "derivatives"
    code = spec2vol_bids([str(bids_root), str(deriv), "participant", "-w", str(work / "work")])
    if code != 0:
        failures.append(f"the participant level exited with {code}")
    for label in labels:
        if not list((deriv / f"sub-{label}" / "eeg").glob("*_desc-stft_spectrogram.h5")):
            failures.append(f"no spectrogram for sub-{label}")
    return failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", nargs="?", type=Path, help="output folder of the demonstration (default: temporary)")
    parser.add_argument("--source", type=Path, help="your NODDI-style folder (with EEG/ and fMRI/)")
    parser.add_argument("--bids", type=Path, help="the BIDS dataset to write (default: OUT_DIR/bids)")
    parser.add_argument("--task", default="rest", help="BIDS task label (default: rest)")
    parser.add_argument("--tr", type=float, help="repetition time in seconds (default: from the NIfTI header)")
    parser.add_argument("--line-freq", type=float, default=50.0, help="power line frequency (default: 50 Hz)")
    args = parser.parse_args(argv)

    if args.source is not None:  # the user's own data: convert only
        bids_root = (args.bids or Path("bids")).absolute()
        labels = convert(args.source, bids_root, task=args.task, tr=args.tr, line_freq=args.line_freq)
        print(f"wrote {len(labels)} subject(s) into {bids_root}")
        return 0 if labels else 1

    with tempfile.TemporaryDirectory(prefix="spec2vol_noddi_") as tmp:
        out = (args.out or Path(tmp)).absolute()
        out.mkdir(parents=True, exist_ok=True)
        source = fabricate_noddi_folder(out)
        print("fabricated", source, "with", sorted(str(p.relative_to(source)) for p in source.rglob("*.*")))
        bids_root = (args.bids or out / "bids").absolute()
        labels = convert(source, bids_root, task=args.task, tr=args.tr, line_freq=args.line_freq)
        failures = check(bids_root, labels, out) if labels else ["nothing was converted"]
    for msg in failures:
        print("FAILED:", msg, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
