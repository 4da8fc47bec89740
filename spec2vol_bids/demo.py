"""``make demo``: the whole product end to end on a small simulated dataset.

Steps (each one is the real command a user would type; the commands are printed as they run):

1. ``spec2vol_bids simulate``: a small EEG-fMRI BIDS dataset with known ground truth (``tiny`` preset, 6 subjects x
   300 volumes);
2. ``spec2vol_bids BIDS_DIR BIDS_DIR/derivatives/spec2vol participant``: spectrograms, targets, reports;
3. ``spec2vol_bids train``: the default model (``spec2vol-lowrank``: the published encoder with a global low-rank
   read-out, ``tiny`` preset) with the mean-volume and ridge baselines, trained on 4 subjects, its epoch chosen on a
   validation subject and scored on a held-out test subject, next to the simulator's noise ceiling;
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

SUBJECTS = 6
VOLUMES = 300
TEST_SUBJECT = "06"
VAL_SUBJECT = "05"
EPOCHS = 3


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
    parser.add_argument("--epochs", type=int, default=EPOCHS,
                        help=f"training epochs of the tiny model (default {EPOCHS})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the simulation and the training (default 0)")
    return parser


def run(out: Path, *, epochs: int = EPOCHS, seed: int = 0) -> dict[str, Path]:
    """Run the demo into ``out`` and return the main output paths."""
    out = Path(out).resolve()
    bids_dir, work_dir = out / "bids", out / "work"
    deriv_dir, model_dir = bids_dir / "derivatives" / "spec2vol", out / "model"
    t0 = time.perf_counter()
    _step("simulate a small EEG-fMRI BIDS dataset",
          ["simulate", str(bids_dir), "--preset", "tiny", "--subjects", str(SUBJECTS), "--volumes", str(VOLUMES),
           "--seed", str(seed), "--overwrite"])
    _step("participant level: EEG spectrograms and BOLD targets",
          [str(bids_dir), str(deriv_dir), "participant", "-w", str(work_dir)])
    ceiling = bids_dir / "derivatives" / "simulation" / "noise_ceiling.tsv"
    _step("train the default model, tiny preset (test subject held out, best epoch chosen on a validation subject)",
          ["train", str(deriv_dir), str(model_dir), "--preset", "tiny",
           "--cv", "split", "--test-subjects", TEST_SUBJECT, "--val-subjects", VAL_SUBJECT,
           "--epochs", str(epochs), "--accumulation", "1", "--warmup-steps", "20",
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
