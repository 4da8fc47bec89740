"""Embed ``init_spec2vol_wf`` in your own nipype workflow.

The spec2vol-bids workflow of one paired EEG-fMRI run has an ``inputnode`` (``eeg_file``, ``bold_file``,
``repetition_time``, optional ``channels_tsv``/``events_tsv``) and an ``outputnode`` (``spectrogram``,
``target``, ``mask``, ``prediction``, ``out_files``), like fMRIPrep's ``init_*_wf`` builders. Here a user's
workflow feeds it from an ``IdentityInterface`` "source" node and reads its spectrogram in a downstream
``Function`` node.

Run::

    python examples/embed_workflow.py [OUT_DIR]

It simulates a one-subject tiny EEG-fMRI BIDS dataset in ``OUT_DIR`` (default: a temporary folder), runs the
workflow and checks its outputs; the exit code is non-zero when a check fails.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("NIPYPE_NO_ET", "1")  # no nipype update check (no network needed)


def spectrogram_shape(spectrogram: str) -> list:
    """A user's downstream step: read the spectrogram's shape [windows, channels, frequencies].

    nipype ``Function`` nodes run the function's source in isolation, so imports go inside.
    """
    from spec2vol_bids.io.spectrogram import load_spectrogram

    return list(load_spectrogram(spectrogram, data=False).shape)


def main(out: Path) -> int:
    from nipype.interfaces import utility as niu
    from nipype.pipeline import engine as pe

    from spec2vol_bids.config import PreprocConfig
    from spec2vol_bids.io.names import sidecar_path
    from spec2vol_bids.simulate import simulate_dataset
    from spec2vol_bids.workflows.base import init_spec2vol_wf

    # 1. a tiny simulated BIDS dataset: 1 subject, 16 EEG channels at 250 Hz, BOLD 64 x 64 x 8, TR 2 s
    bids = simulate_dataset(out / "bids", preset="tiny", subjects=1, volumes=40, overwrite=True, progress=False)
    eeg = next((bids / "sub-01" / "eeg").glob("*_eeg.vhdr"))
    bold = next((bids / "sub-01" / "func").glob("*_bold.nii.gz"))
    tr = json.loads(sidecar_path(bold).read_text())["RepetitionTime"]

    # 2. the user's workflow: a source node -> spec2vol_wf -> a downstream analysis node
    wf = pe.Workflow(name="my_pipeline", base_dir=str(out / "work"))
    source = pe.Node(niu.IdentityInterface(fields=["eeg", "bold", "tr"]), name="source")
    source.inputs.eeg, source.inputs.bold, source.inputs.tr = str(eeg), str(bold), tr

    spec2vol_wf = init_spec2vol_wf(config=PreprocConfig(), output_dir=out / "derivatives", device="cpu")
    shape = pe.Node(niu.Function(input_names=["spectrogram"], output_names=["shape"], function=spectrogram_shape),
                    name="spectrogram_shape")
    wf.connect([
        (source, spec2vol_wf, [("eeg", "inputnode.eeg_file"), ("bold", "inputnode.bold_file"),
                               ("tr", "inputnode.repetition_time")]),
        (spec2vol_wf, shape, [("outputnode.spectrogram", "spectrogram")]),
    ])
    graph = wf.run()  # serial plugin; use plugin="MultiProc" for parallel runs

    # 3. check the outputs: the downstream node's result and the derivatives written to output_dir
    node = next(n for n in graph.nodes() if n.name == "spectrogram_shape")
    n_windows, n_channels, n_freqs = node.result.outputs.shape
    print(f"spectrogram: {n_windows} windows x {n_channels} channels x {n_freqs} frequencies")
    failures = []
    if n_windows != 40 or n_channels != 16 or n_freqs < 1:
        failures.append(f"unexpected spectrogram shape {node.result.outputs.shape} (expected [40, 16, F])")
    deriv = out / "derivatives" / "sub-01"
    for pattern in ("eeg/*_desc-stft_spectrogram.h5", "eeg/*_desc-stft_spectrogram.json",
                    "func/*_desc-target_bold.nii.gz", "func/*_desc-target_bold.json",
                    "func/*_desc-brain_mask.nii.gz"):
        found = sorted(deriv.glob(pattern))
        print(f"{pattern:<36} {found[0].relative_to(out) if found else 'MISSING'}")
        if not found:
            failures.append(f"no {pattern} under {deriv}")
    for msg in failures:
        print("FAILED:", msg, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    if len(sys.argv) > 1:
        out_dir = Path(sys.argv[1]).absolute()
        out_dir.mkdir(parents=True, exist_ok=True)
        sys.exit(main(out_dir))
    with tempfile.TemporaryDirectory(prefix="spec2vol_embed_") as tmp:
        sys.exit(main(Path(tmp)))
