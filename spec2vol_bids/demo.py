"""``make demo``: the whole product end to end on a small simulated dataset.

Steps (each one is the real command a user would type; the commands are printed as they run):

1. ``spec2vol_bids simulate``: a tiny EEG-fMRI BIDS dataset with known ground truth;
2. ``spec2vol_bids BIDS_DIR BIDS_DIR/derivatives/spec2vol participant``: spectrograms, targets, reports;
3. ``spec2vol_bids train``: the tiny Spec2VolCAMU-Net with the mean-volume and ridge baselines, one held-out test
   subject and a validation subject, reported next to the simulator's noise ceiling;
4. ``spec2vol_bids ... participant --model``: predicted BOLD for the test subject;
5. ``spec2vol_bids ... group``: the metrics table and the group report.

Run ``python -m spec2vol_bids.demo --help`` for the options (output folder, epochs, seed).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from .cli.main import main as cli_main

TEST_SUBJECT = "04"
VAL_SUBJECT = "03"


def _step(title: str, argv: list[str]) -> None:
    print(f"\n== {title}\n$ spec2vol_bids {shlex.join(argv)}", flush=True)
    t0 = time.perf_counter()
    code = cli_main(argv)
    if code != 0:
        raise SystemExit(f"demo step failed ({title}): exit code {code}")
    print(f"   ({time.perf_counter() - t0:.0f} s)", flush=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m spec2vol_bids.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("demo_out"), help="demo folder (replaced; default demo_out)")
    parser.add_argument("--epochs", type=int, default=20, help="training epochs of the tiny model (default 20)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the simulation and the training (default 0)")
    return parser


def run(out: Path, *, epochs: int = 20, seed: int = 0) -> dict[str, Path]:
    """Run the demo into ``out`` and return the main output paths."""
    out = Path(out).resolve()
    bids_dir, work_dir = out / "bids", out / "work"
    deriv_dir, model_dir = bids_dir / "derivatives" / "spec2vol", out / "model"
    t0 = time.perf_counter()
    _step("simulate a tiny EEG-fMRI BIDS dataset",
          ["simulate", str(bids_dir), "--preset", "tiny", "--seed", str(seed), "--overwrite"])
    _step("participant level: EEG spectrograms and BOLD targets",
          [str(bids_dir), str(deriv_dir), "participant", "-w", str(work_dir)])
    ceiling = bids_dir / "derivatives" / "simulation" / "noise_ceiling.tsv"
    _step("train the tiny Spec2VolCAMU-Net (test subject held out, best epoch chosen on a validation subject)",
          ["train", str(deriv_dir), str(model_dir), "--model", "spec2vol", "--preset", "tiny",
           "--cv", "split", "--test-subjects", TEST_SUBJECT, "--val-subjects", VAL_SUBJECT,
           "--epochs", str(epochs), "--batch-size", "8", "--accumulation", "1", "--warmup-steps", "10", "--lr", "3e-3",
           "--baselines", "mean", "ridge", "--seed", str(seed), "--noise-ceiling", str(ceiling)])
    checkpoint = model_dir / "model.ckpt"
    _step("participant level with the trained model: predicted BOLD for the test subject",
          [str(bids_dir), str(deriv_dir), "participant", "-w", str(work_dir), "--model", str(checkpoint),
           "--participant-label", TEST_SUBJECT])
    _step("group level: metrics table and report", [str(bids_dir), str(deriv_dir), "group"])
    outputs = {
        "dataset": bids_dir,
        "derivatives": deriv_dir,
        "participant report": deriv_dir / f"sub-{TEST_SUBJECT}.html",
        "training report": model_dir / "report.html",
        "model": checkpoint,
        "group metrics": deriv_dir / "group_metrics.tsv",
        "group report": deriv_dir / "group.html",
    }
    print(f"\nDemo finished in {time.perf_counter() - t0:.0f} s. Open these:")
    for name, path in outputs.items():
        print(f"  {name:<19} {path}")
    return outputs


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run(args.out, epochs=args.epochs, seed=args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
