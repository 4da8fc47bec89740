"""Draw the figures of docs/scanner.rst from a simulated run recorded in the scanner.

A small dataset is simulated with the MR gradient and pulse artefacts (the ``tiny`` preset: 16 EEG channels and an
ECG, 20 slices per TR of 2 s, 60 volumes, seed 0), corrected with the pipeline's steps
(:func:`spec2vol_bids.pipeline.artefacts.correct_gradient`, then :func:`~spec2vol_bids.pipeline.artefacts.correct_bcg`),
and drawn:

* ``scanner_traces.png``: 3 s of one channel as recorded, after the gradient correction, and after the pulse
  correction over the clean EEG (the simulation's ground truth);
* ``scanner_qc.png``: the report's "EEG artefacts" figure (:func:`spec2vol_bids.reports.figures.artefact_figure`)
  of the run's merged QC.

Run: ``python docs/scanner_figures.py [--figures DIR] [--sfreq HZ]`` (default: ``docs/_static``, 2500 Hz; about a
minute on 2 cores).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

STATIC = Path(__file__).resolve().parent / "_static"
N_VOL, TR = 60, 2.0
STEM = "sub-01_task-rest"
CHANNEL = "Oz"
SECONDS = (30.0, 33.0)


def main(figures: Path = STATIC, sfreq: float = 2500.0, seed: int = 0) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from spec2vol_bids.bids.eeg import EEGRecording
    from spec2vol_bids.config import PreprocConfig
    from spec2vol_bids.pipeline import artefacts as PA
    from spec2vol_bids.reports.figures import artefact_figure
    from spec2vol_bids.simulate import get_preset, simulate_dataset

    figures = Path(figures)
    figures.mkdir(parents=True, exist_ok=True)
    preset = get_preset("tiny").replace(n_subjects=1, n_volumes=N_VOL, n_eeg=16, grid=(64, 64, 20))
    with tempfile.TemporaryDirectory(prefix="scanner_figures_") as tmp:
        root = simulate_dataset(Path(tmp) / "bids", preset=preset, artefacts="gradient,bcg", sfreq=sfreq, seed=seed,
                                progress=False)
        eeg = root / f"sub-01/eeg/{STEM}_eeg.vhdr"
        files = {"channels_tsv": eeg.with_name(f"{STEM}_channels.tsv")}
        clean = root / f"derivatives/simulation/sub-01/eeg/{STEM}_desc-clean_eeg.vhdr"
        cfg = PreprocConfig().replace(correction={"method": "gradient+bcg"})
        work = Path(tmp) / "work"
        g = PA.correct_gradient(eeg, out_file=work / "g" / f"{STEM}_eeg.vhdr", qc_file=work / "g.json",
                                ecg_file=work / "ecg.npy", n_volumes=N_VOL, repetition_time=TR, config=cfg,
                                events_tsv=eeg.with_name(f"{STEM}_events.tsv"), cardiac_qc=False, **files)
        b = PA.correct_bcg(g["out_file"], out_file=work / "b" / f"{STEM}_eeg.vhdr", qc_file=work / "b.json",
                           ecg_file=g["ecg_file"], config=cfg, **files)
        qc = PA.merge_qc([g["qc_file"], b["qc_file"]], cfg)["ArtefactQC"]

        def trace(path):
            rec = EEGRecording(path)
            a, z = (int(round(s * rec.sfreq)) for s in SECONDS)
            return rec.segment_reader([rec.ch_names.index(CHANNEL)])(a, z)[0] * 1e6, rec.sfreq

        raw, fs = trace(eeg)
        grad, _ = trace(g["out_file"])
        both, _ = trace(b["out_file"])
        truth, _ = trace(clean)

    import numpy as np

    t = np.arange(raw.size) / fs
    fig, axes = plt.subplots(3, 1, figsize=(9, 5.6), sharex=True, constrained_layout=True)
    axes[0].plot(t, raw / 1e3, lw=0.6, color="#d62728")
    axes[0].set(ylabel="mV", title=f"{CHANNEL} as recorded in the scanner (gradient + pulse artefact)")
    axes[1].plot(t, grad, lw=0.6, color="#ff7f0e")
    axes[1].set(ylabel="uV", title="after the gradient correction (AAS at the slice triggers): the pulse artefact "
                                   "remains")
    axes[2].plot(t, truth, lw=0.6, color="#888888", label="clean EEG (simulation ground truth)")
    axes[2].plot(t, both, lw=0.6, color="#1f77b4", label="after gradient + pulse correction")
    axes[2].set(ylabel="uV", xlabel="time (s)", title="after the pulse correction, over the clean EEG")
    axes[2].legend(fontsize=7, loc="upper right")
    for ax in axes:
        ax.title.set_fontsize(8)
    out = [figures / "scanner_traces.png", figures / "scanner_qc.png"]
    fig.savefig(out[0], dpi=100)
    plt.close(fig)
    fig = artefact_figure(qc, title=f"simulated run ({sfreq:g} Hz, {N_VOL} volumes): scanner artefacts "
                                    "(correction gradient+bcg)")
    fig.savefig(out[1], dpi=100)
    plt.close(fig)
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--figures", type=Path, default=STATIC, help=f"output folder (default {STATIC})")
    parser.add_argument("--sfreq", type=float, default=2500.0, help="EEG sampling frequency (Hz; default 2500)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for path in main(args.figures, args.sfreq, args.seed):
        print(path)
