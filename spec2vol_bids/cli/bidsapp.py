"""The BIDS-App: ``spec2vol_bids BIDS_DIR OUT_DIR {participant,group} [options]``.

The option vocabulary, sanity checks and exit codes follow fMRIPrep/MRIQC and the BIDS-Apps contract:

* ``participant``: for every paired EEG-fMRI run of the selected participants, write the spectrogram and target
  BOLD derivatives (and, with ``--model``, the predicted BOLD) into ``OUT_DIR``, plus ``sub-<label>.html``,
  ``dataset_description.json`` and ``.bidsignore``. Logs, the settings (TOML) and text crash files go to
  ``OUT_DIR/sub-<label>/log/<run-uuid>/``. Participant runs are independent and can run in parallel into the same
  ``OUT_DIR``.
* ``group``: when predictions exist, ``group_metrics.tsv`` (SSIM, PSNR and dynamic correlation per run and per
  subject) and ``group.html``.

Only the standard library and light spec2vol modules are imported at start-up; nipype, torch and nilearn are
imported when a level actually runs, so ``--help`` and ``--version`` are fast.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import logging
import os
import shutil
import sys
import uuid
from pathlib import Path
from typing import Any

from .._version import __version__
from ..bids.fmriprep import DEFAULT_BOLD_SPACE, NATIVE_BOLD_SPACES
from ..config import BOLD_RESIZES, BOLD_SCALINGS, CORRECTIONS, EEG_SCALINGS, FREQUENCY_AXES, TAPERS
from ..errors import (
    EXIT_CODES,
    AnalysisLevelError,
    BusyError,
    CantCreateError,
    NoInputError,
    Spec2VolError,
    UsageError,
    ValidationError,
)
from ..utils import WRITE_HINT, require_path
from .argtypes import nonnegative_int, positive_float, positive_int

__all__ = ["build_parser", "run", "ANALYSIS_LEVELS", "VALIDATOR_IGNORE"]

LOGGER = logging.getLogger("spec2vol_bids")
ANALYSIS_LEVELS = ("participant", "group")
#: validator codes that do not stop spec2vol-bids (EEG sidecar/column details, as fMRIPrep ignores them)
VALIDATOR_IGNORE = (
    "README_FILE_MISSING", "CHANNELS_COLUMN_SFREQ", "CHANNELS_COLUMN_LOWCUT", "CHANNELS_COLUMN_HIGHCUT",
    "CHANNELS_COLUMN_NOTCH", "CHANNELS_COLUMN_REF", "CHANNELS_COLUMN_STATUS", "ELECTRODES_FILE_MISSING",
    "COORDSYSTEM_FILE_MISSING", "EVENTS_TSV_MISSING", "SIDECAR_KEY_RECOMMENDED", "TOO_FEW_AUTHORS",
    "JSON_KEY_RECOMMENDED", "PARTICIPANT_ID_MISMATCH", "PARTICIPANT_ID_COLUMN",
)
#: name of the top-level nipype workflow (inside the work directory)
WORKFLOW_NAME = "spec2vol_bids_{major}_{minor}_wf"
_DOCKER_HINT = ("In a container, mount the folders first, e.g. "
                "`docker run -v /data/bids:/data:ro -v /data/out:/out spec2vol-bids /data /out participant`")


# ------------------------------------------------------------------------------------------------ parser
def _derivatives_arg(text: str) -> tuple[str, Path]:
    """``NAME=PATH`` of ``-d/--derivatives``: a dataset name and the root of an existing derivatives dataset."""
    from ..bids.fmriprep import check_dataset_name, check_derivatives_dataset

    name, sep, path = text.partition("=")
    if not sep or not name.strip() or not path.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, e.g. fmriprep=/data/derivatives/fmriprep, got {text!r}")
    try:
        return check_dataset_name(name.strip()), check_derivatives_dataset(path.strip())
    except Spec2VolError as err:
        raise argparse.ArgumentTypeError(err.one_line()) from None


class _DerivativesAction(argparse.Action):
    """Collect ``-d NAME=PATH`` values, given once or repeated, into one ``{name: path}`` dict, in order."""

    def __call__(self, parser, namespace, values, option_string=None):
        found = dict(getattr(namespace, self.dest) or {})
        for name, path in values:
            if name in found:
                parser.error(f"argument -d/--derivatives: the name {name!r} is given twice")
            found[name] = path
        setattr(namespace, self.dest, found)


class _MemoryAction(argparse.Action):
    """``--mem``: fMRIPrep's reading (:func:`~spec2vol_bids.cli.argtypes.memory_gb`), stored in GB; the text as
    given is kept in ``mem_text`` (a bare number is MB, which a user of ``--mem-gb`` may not expect)."""

    def __call__(self, parser, namespace, values, option_string=None):
        from .argtypes import memory_gb

        try:
            setattr(namespace, self.dest, memory_gb(values))
        except argparse.ArgumentTypeError as err:
            parser.error(f"argument {option_string}: {err}")
        namespace.mem_text = str(values)


def _bold_space_arg(text: str) -> str:
    """A ``--bold-space`` value (checked with :func:`~spec2vol_bids.bids.fmriprep.parse_bold_space`)."""
    from ..bids.fmriprep import parse_bold_space

    try:
        parse_bold_space(text)
    except Spec2VolError as err:
        raise argparse.ArgumentTypeError(err.one_line()) from None
    return text.strip()


def _eeg_desc_arg(text: str) -> str:
    """An ``--eeg-desc`` label (checked with :func:`~spec2vol_bids.bids.eegprep.check_eeg_desc`)."""
    from ..bids.eegprep import check_eeg_desc

    try:
        return check_eeg_desc(text)
    except Spec2VolError as err:
        raise argparse.ArgumentTypeError(err.one_line()) from None


def build_parser(prog: str = "spec2vol_bids") -> argparse.ArgumentParser:
    """The BIDS-App argument parser (fMRIPrep's option names and spellings)."""
    from .main import add_verbosity_options, commands_epilog, version_string

    codes = "\n".join(f"  {code:>3}  {text}" for code, text in EXIT_CODES.items())
    parser = argparse.ArgumentParser(
        prog=prog,
        description=("spec2vol-bids: EEG spectrograms and BOLD targets for Spec2VolCAMU-Net from a BIDS "
                     "EEG-fMRI dataset, BOLD predicted from EEG with a trained model, and group metrics. "
                     "A BIDS-App (https://bids-apps.neuroimaging.io)."),
        epilog=f"{commands_epilog()}\n\nexit codes:\n{codes}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("bids_dir", type=Path, metavar="BIDS_DIR",
                        help="root of the raw BIDS dataset (read only; never written)")
    parser.add_argument("output_dir", type=Path, metavar="OUT_DIR",
                        help="output folder (a BIDS derivative dataset), e.g. BIDS_DIR/derivatives/spec2vol: new, "
                             "empty or made by spec2vol-bids (never another pipeline's outputs); for group level "
                             "it holds the participant-level outputs")
    parser.add_argument("analysis_level", metavar="{participant,group}",
                        help="participant: per-run derivatives (and predictions); group: metrics + report")
    parser.add_argument("--version", action="version", version=version_string())

    g = parser.add_argument_group("BIDS filtering")
    g.add_argument("--participant-label", "--participant_label", nargs="+", metavar="LABEL",
                   help="subjects to process, with or without the sub- prefix (default: all; an empty label is "
                        "an error, not 'all')")
    g.add_argument("--session-label", "--session_label", nargs="+", metavar="LABEL",
                   help="sessions to process, with or without ses- (default: all)")
    g.add_argument("-t", "--task-id", "--task_id", nargs="+", metavar="TASK",
                   help="tasks to process (default: all)")
    g.add_argument("--bids-filter-file", "--bids_filter_file", type=Path, metavar="FILE",
                   help='JSON of PyBIDS filters per query, e.g. {"bold": {"run": 1}, "eeg": {"run": 1}}; '
                        'null means the entity is absent, "*" any value')
    g.add_argument("--bids-database-dir", type=Path, metavar="DIR",
                   help="folder of a cached PyBIDS index (created if missing; outside BIDS_DIR, which is never "
                        "written to)")
    g.add_argument("-d", "--derivatives", nargs="+", type=_derivatives_arg, action=_DerivativesAction,
                   metavar="NAME=PATH",
                   help="BIDS derivatives datasets with preprocessed BOLD or EEG, e.g. -d fmriprep=/data/derivatives/"
                        "fmriprep eegprep=/data/derivatives/eegprep (repeatable; searched in the order given). A "
                        "dataset with desc-preproc_bold files in func/ gives the targets (each run's desc-preproc_bold "
                        "in --bold-space and its desc-brain_mask) instead of the raw BOLD; a dataset with eeg/ files "
                        "gives the EEG (each run's desc-<--eeg-desc> recording) instead of the raw EEG. A run "
                        "without a match is an error. NAME names the dataset in the sidecars' BIDS URIs")
    g.add_argument("--skip-bids-validation", "--skip_bids_validation", "--skip_bids_validator",
                   "--skip-bids-validator", action="store_true",
                   help="do not validate BIDS_DIR with bids-validator-deno")

    g = parser.add_argument_group("performance")
    g.add_argument("--nprocs", "--nthreads", "--n_cpus", "--n-cpus", type=positive_int, metavar="N",
                   help="maximum number of processes nipype runs at once (default: all CPUs; 1: Linear plugin)")
    g.add_argument("--omp-nthreads", "--omp_nthreads", type=positive_int, metavar="N",
                   help="threads per process for the model (default: min(nprocs - 1, 8), at least 1)")
    g.add_argument("--mem", "--mem-mb", "--mem_mb", action=_MemoryAction, metavar="MEM", dest="mem_gb",
                   help="memory nipype may schedule, as fMRIPrep reads it: a bare number is MB, or give a unit: "
                        "16GB, 500MB, 16G, 8GiB")
    g.add_argument("--mem-gb", "--mem_gb", type=positive_float, metavar="GB", dest="mem_gb",
                   help="the same in gigabytes (MRIQC's spelling)")
    g.add_argument("--use-plugin", "--use_plugin", type=Path, metavar="FILE",
                   help="YAML file with 'plugin:' and 'plugin_args:' for nipype (e.g. SLURM)")

    g = parser.add_argument_group("model")
    g.add_argument("--model", type=Path, metavar="CKPT",
                   help="trained checkpoint (spec2vol_bids train); also predicts BOLD from EEG")
    g.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="device for the model; cuda marks the node use_gpu for nipype's GPU scheduling "
                        "(default: auto, CUDA when a GPU is visible)")
    g.add_argument("--batch-size", type=positive_int, default=8, metavar="N", help="pairs per forward pass (default 8)")

    g = parser.add_argument_group("EEG spectrogram (defaults: the official Spec2VolCAMU-Net pipeline)")
    g.add_argument("--config-file", "--config_file", type=Path, metavar="TOML",
                   help="preprocessing settings ([eeg], [pairing], [bold] tables); command-line options win")
    g.add_argument("--volume-marker", metavar="NAME",
                   help="annotation name of the scanner volume trigger (default R128 = Response/R128)")
    g.add_argument("--window-length", type=float, metavar="SEC",
                   help="core window per volume in seconds (default: one TR)")
    g.add_argument("--window-overlap", type=float, metavar="FRAC",
                   help="extend each window backwards by this fraction of its length, in [0, 1) (default 0)")
    g.add_argument("--taper", choices=TAPERS, help="window function (default boxcar = none)")
    g.add_argument("--log-power", action="store_const", const=True, default=None,
                   help="power in dB instead of the linear FFT magnitude")
    g.add_argument("--freq-axis", choices=FREQUENCY_AXES,
                   help="bins: FFT bins 1..N at k/T Hz (default); hz: N frequencies from --fmin to --fmax")
    g.add_argument("--n-freqs", type=positive_int, metavar="N", help="frequencies per row (default 249)")
    g.add_argument("--fmin", type=float, metavar="HZ", help="lowest frequency of the hz axis (default 1)")
    g.add_argument("--fmax", type=float, metavar="HZ", help="highest frequency of the hz axis (default 100)")
    g.add_argument("--eeg-scaling", choices=EEG_SCALINGS,
                   help="spectrogram standardisation (default zscore-electrodes)")
    g.add_argument("--include-channels", nargs="+", metavar="NAME", help="use only these channels")
    g.add_argument("--exclude-channels", nargs="+", metavar="NAME", help="drop these channels")
    g.add_argument("--exclude-channel-types", nargs="+", metavar="TYPE",
                   help="drop channels of these BIDS types, e.g. ECG EOG (default: keep all, as the official code)")
    g.add_argument("--keep-bad-channels", action="store_const", const=True, default=None,
                   help="keep the channels marked status=bad in channels.tsv (default: leave them out, as MNE-BIDS "
                        "does; the sidecar and the report list them either way)")

    g = parser.add_argument_group("EEG recorded in the scanner (artefacts)")
    g.add_argument("--eeg-correction", choices=CORRECTIONS,
                   help="correct the MR artefacts of the EEG before the spectrogram: gradient (average artefact "
                        "subtraction at the slice or volume triggers, sub-sample aligned, then a low-pass) or "
                        "gradient+bcg (then the pulse artefact at the R peaks of the ECG). Default none: the EEG is "
                        "used as it is and the report warns when the QC finds artefact in it")
    g.add_argument("--slice-marker", metavar="NAME",
                   help="annotation name of the scanner's slice trigger, used for the gradient correction when the "
                        "recording has it (default Slice = Response/Slice); otherwise the volume markers are used")
    g.add_argument("--ecg-channel", metavar="NAME",
                   help="the ECG channel for the R peaks (default: the channel of type ECG in channels.tsv)")
    g.add_argument("--eeg-desc", type=_eeg_desc_arg, metavar="LABEL",
                   help="desc label of the preprocessed EEG taken from a -d dataset holding EEG, i.e. its "
                        "desc-LABEL_eeg files (default preproc; only with -d)")

    g = parser.add_argument_group("pairing of EEG windows and BOLD volumes")
    g.add_argument("--n-windows", type=positive_int, metavar="N", help="windows per model input (default 20)")
    g.add_argument("--discard", type=nonnegative_int, metavar="N", help="initial volumes taking part in no pair (default 6)")
    g.add_argument("--lag", type=nonnegative_int, metavar="N", help="volumes between the last window and the target (default 0)")
    g.add_argument("--window-span-s", type=float, metavar="SEC",
                   help="alternative to --n-windows in seconds (the paper's 20 s of EEG)")
    g.add_argument("--lag-s", type=float, metavar="SEC",
                   help="alternative to --lag in seconds (the paper's window ending 6 s before the volume)")

    g = parser.add_argument_group("BOLD targets")
    g.add_argument("--bold-scaling", choices=BOLD_SCALINGS, help="per-volume scaling (default minmax)")
    g.add_argument("--bold-resize", choices=BOLD_RESIZES, help="resize to the model grid (default dct)")
    g.add_argument("--n-slices", type=positive_int, metavar="D", help="slices of the target grid (default: see docs)")
    g.add_argument("--bold-space", type=_bold_space_arg, metavar="SPACE",
                   help=f"space of the preprocessed BOLD taken from -d/--derivatives (only with -d): a template "
                        f"or T1w, optionally with fMRIPrep's modifiers, e.g. MNI152NLin2009cAsym:res-2; "
                        f"{' or '.join(NATIVE_BOLD_SPACES)} for the BOLD run's own grid (files without a space "
                        f"entity) (default {DEFAULT_BOLD_SPACE})")

    g = parser.add_argument_group("other options")
    g.add_argument("-w", "--work-dir", type=Path, default=None, metavar="DIR",
                   help="nipype working directory; a rerun with the same folder skips finished steps. Runs of "
                        "different participants may share it; a second run of the same participant exits 75 while "
                        "the first holds it (default: ./work)")
    g.add_argument("--clean-workdir", action="store_true", help="delete the working directory after success")
    g.add_argument("--stop-on-first-crash", action="store_true", help="stop at the first failed step")
    g.add_argument("--write-graph", action="store_true", help="write the workflow graph (needs graphviz)")
    g.add_argument("--notrack", action="store_true", help="accepted for compatibility; spec2vol-bids never tracks")
    g.add_argument("--reports-only", "--reports_only", action="store_true",
                   help="only rebuild the reports (sub-<label>.html, or group.html at the group level) and the "
                        "methods boilerplate from the derivatives already in OUT_DIR; nothing is computed again")
    g.add_argument("--boilerplate-only", "--boilerplate_only", action="store_true",
                   help="only write the methods text with its references (OUT_DIR/logs/CITATION.md, .bib, .html) "
                        "for the selected runs and settings; nothing is processed")
    g.add_argument("--resource-monitor", "--resource_monitor", action="store_true",
                   help="measure the memory and CPU of every step with nipype's resource monitor; written to "
                        "sub-<label>/log/<run>/resource_monitor.tsv")
    add_verbosity_options(g)
    return parser


# ------------------------------------------------------------------------------------------------ helpers
def _resolve(path: Path) -> Path:
    return Path(os.path.abspath(os.path.expanduser(path)))


def _is_within(path: Path, parent: Path) -> bool:
    try:
        Path(os.path.realpath(path)).relative_to(os.path.realpath(parent))
        return True
    except ValueError:
        return False


def check_paths(bids_dir: Path, output_dir: Path, work_dir: Path | None, level: str,
                derivatives: dict[str, Path] | None = None, database_dir: Path | None = None) -> None:
    """fMRIPrep's sanity checks: the raw dataset (and a ``-d`` dataset) is never an output or a work folder.

    Raises
    ------
    NoInputError
        ``bids_dir`` does not exist.
    UsageError
        ``output_dir`` is ``bids_dir``, ``bids_dir/derivatives`` itself, or lies inside ``bids_dir`` outside
        ``derivatives/``; the work dir or the ``--bids-database-dir`` lies in ``bids_dir``; ``output_dir`` is one
        of the ``derivatives`` datasets, or another dataset / a folder of other files
        (:func:`~spec2vol_bids.io.dataset.check_output_dataset`).
    """
    from ..io.dataset import DERIVATIVE_DATASET_NAME, check_output_dataset, dataset_generator

    require_path(bids_dir, "BIDS_DIR", folder=True, hint=_DOCKER_HINT)
    if os.path.realpath(output_dir) == os.path.realpath(bids_dir):
        raise UsageError("OUT_DIR must not be BIDS_DIR (the raw dataset is never written to)",
                         hint=f"Use e.g. {bids_dir / 'derivatives' / f'spec2vol-bids-{__version__}'}")
    if _is_within(output_dir, bids_dir) and not _is_within(output_dir, bids_dir / "derivatives"):
        raise UsageError(f"OUT_DIR {output_dir} lies inside BIDS_DIR but not under its derivatives/ folder",
                         hint=f"Use {bids_dir / 'derivatives' / 'spec2vol'} or a folder outside BIDS_DIR")
    if (os.path.realpath(output_dir) == os.path.realpath(bids_dir / "derivatives")
            and dataset_generator(output_dir)[1] != DERIVATIVE_DATASET_NAME):
        raise UsageError(f"OUT_DIR must not be {bids_dir / 'derivatives'} itself (it holds one folder per "
                         "pipeline)", hint=f"Use {bids_dir / 'derivatives' / 'spec2vol'}")
    if work_dir is not None and _is_within(work_dir, bids_dir):
        raise UsageError(f"the work directory {work_dir} lies inside BIDS_DIR",
                         hint="Pass -w/--work-dir with a folder outside the raw dataset")
    if database_dir is not None and _is_within(database_dir, bids_dir):
        raise UsageError(f"the --bids-database-dir {database_dir} lies inside BIDS_DIR (the raw dataset is never "
                         "written to)", hint="Pass a folder outside the raw dataset, e.g. next to the work directory")
    for name, root in (derivatives or {}).items():
        if os.path.realpath(output_dir) == os.path.realpath(root):
            raise UsageError(f"OUT_DIR must not be the derivatives dataset {name}={root} (it is read, never written)",
                             hint=f"Use e.g. {bids_dir / 'derivatives' / 'spec2vol'}")
    if level == "group" and not output_dir.is_dir():
        raise NoInputError(f"OUT_DIR {output_dir} does not exist; group level needs the participant outputs",
                           hint="Run the participant level first")
    check_output_dataset(output_dir, ignore=[p for p in (work_dir, database_dir) if p is not None])


def check_writable_paths(output_dir: Path, work_dir: Path | None, database_dir: Path | None = None) -> None:
    """Refuse, before anything starts, an OUT_DIR, work dir or PyBIDS database folder that cannot be written.

    Raises
    ------
    CantCreateError
        One of them exists but is not writable (e.g. a read-only mount), or cannot be created.
    """
    from ..utils import check_writable

    check_writable(output_dir, "OUT_DIR")
    if work_dir is not None:
        check_writable(work_dir, "the work directory (-w/--work-dir)")
    if database_dir is not None:
        check_writable(database_dir, "the --bids-database-dir")


def build_config(args: argparse.Namespace):
    """PreprocConfig from ``--config-file`` and the command-line options (options win)."""
    from ..config import PreprocConfig

    cfg = PreprocConfig.from_toml(args.config_file) if args.config_file else PreprocConfig()
    eeg = {
        "volume_marker": args.volume_marker, "window_length": args.window_length,
        "overlap": args.window_overlap, "taper": args.taper, "log_power": args.log_power,
        "frequency_axis": args.freq_axis, "n_freqs": args.n_freqs, "fmin": args.fmin, "fmax": args.fmax,
        "scaling": args.eeg_scaling,
        "include": list(args.include_channels) if args.include_channels else None,
        "exclude": list(args.exclude_channels) if args.exclude_channels else None,
        "exclude_types": list(args.exclude_channel_types) if args.exclude_channel_types else None,
        "keep_bad_channels": args.keep_bad_channels,
    }
    pairing = {"n_windows": args.n_windows, "discard_volumes": args.discard, "lag_volumes": args.lag,
               "window_span_s": args.window_span_s, "lag_s": args.lag_s}
    bold = {"scaling": args.bold_scaling, "resize": args.bold_resize, "n_slices": args.n_slices}
    correction = {"method": args.eeg_correction, "slice_marker": args.slice_marker,
                  "ecg_channel": args.ecg_channel}
    changes = {name: {k: v for k, v in section.items() if v is not None}
               for name, section in (("eeg", eeg), ("pairing", pairing), ("bold", bold),
                                     ("correction", correction))}
    return cfg.replace(**{k: v for k, v in changes.items() if v})


def _validate_input(bids_dir: Path, participants: list[str] | None) -> None:
    from ..bids.validate import run_validator, validator_available

    if not validator_available():
        LOGGER.warning("bids-validator-deno is not installed: BIDS_DIR is not validated "
                       "(pip install bids-validator-deno, or pass --skip-bids-validation to silence this)")
        return
    LOGGER.info("validating %s with bids-validator-deno", bids_dir)
    report = run_validator(bids_dir, ignore=VALIDATOR_IGNORE)
    errors = report.errors
    if participants:
        # like fMRIPrep: problems of subjects that were not selected do not stop this run
        keep = tuple(f"sub-{p}/" for p in participants)
        errors = [e for e in errors
                  if not e.location.lstrip("/").startswith("sub-") or e.location.lstrip("/").startswith(keep)]
    for issue in report.warnings[:10]:
        LOGGER.debug("validator warning: %s", issue)
    if errors:
        for issue in errors[:20]:
            LOGGER.error("validator: %s %s", issue, issue.message)
        raise ValidationError(f"BIDS_DIR failed BIDS validation with {len(errors)} error(s), first: {errors[0]}",
                              hint="Fix the dataset, or pass --skip-bids-validation to run anyway")


def _plugin_settings(args: argparse.Namespace, device: str) -> dict[str, Any]:
    nprocs = args.nprocs or os.cpu_count() or 1
    if args.use_plugin:
        import yaml

        require_path(args.use_plugin, "the --use-plugin file", hint="Check --use-plugin")
        spec = yaml.safe_load(args.use_plugin.read_text(encoding="utf-8")) or {}
        if not isinstance(spec, dict) or "plugin" not in spec:
            raise UsageError(f"{args.use_plugin} has no 'plugin:' entry",
                             hint="Write e.g. 'plugin: MultiProc' and 'plugin_args: {n_procs: 4}'")
        return {"plugin": spec["plugin"], "plugin_args": dict(spec.get("plugin_args") or {})}
    if nprocs == 1:
        return {"plugin": "Linear", "plugin_args": {}}
    plugin_args: dict[str, Any] = {"n_procs": int(nprocs), "raise_insufficient": False, "maxtasksperchild": 1}
    if args.mem_gb:
        plugin_args["memory_gb"] = float(args.mem_gb)
        text = getattr(args, "mem_text", "")
        if text.strip().replace(".", "", 1).isdigit() and args.mem_gb < 1:
            LOGGER.warning("--mem %s means %g MB, as in fMRIPrep (a bare number is megabytes); write e.g. "
                           "--mem %sGB for gigabytes", text, float(text), text)
    if device == "cuda":
        plugin_args["n_gpu_procs"] = 1
    return {"plugin": "MultiProc", "plugin_args": plugin_args}


# ------------------------------------------------------------------------------------------------ run
def run(args: argparse.Namespace) -> int:
    """Run the BIDS-App; returns the exit code (errors are raised as :class:`Spec2VolError`)."""
    from .main import setup_logging

    setup_logging(args.verbose, args.quiet)
    level = args.analysis_level
    if level not in ANALYSIS_LEVELS:
        raise AnalysisLevelError(f"unknown analysis level {level!r}", hint="Use participant or group")
    from ..bids.filters import check_labels

    check_labels(args.participant_label, "sub-", "--participant-label")
    check_labels(args.session_label, "ses-", "--session-label")
    check_labels(args.task_id, "task-", "-t/--task-id")
    bids_dir = _resolve(args.bids_dir)
    output_dir = _resolve(args.output_dir)
    work_dir = _resolve(args.work_dir) if args.work_dir else Path.cwd() / "work"
    database_dir = _resolve(args.bids_database_dir) if args.bids_database_dir else None
    participant = level == "participant"
    check_paths(bids_dir, output_dir, work_dir if participant else None, level, args.derivatives,
                database_dir=database_dir if participant else None)
    check_writable_paths(output_dir, work_dir if participant else None, database_dir if participant else None)
    if args.boilerplate_only and args.reports_only:
        raise UsageError("--boilerplate-only and --reports-only exclude each other",
                         hint="--reports-only also rewrites the boilerplate; give one of them")
    if level == "participant":
        return run_participant(args, bids_dir=bids_dir, output_dir=output_dir, work_dir=work_dir)
    if args.boilerplate_only:
        raise UsageError("--boilerplate-only is a participant-level option (the methods text describes the runs)",
                         hint="Run `spec2vol_bids BIDS_DIR OUT_DIR participant --boilerplate-only`")
    return run_group(args, bids_dir=bids_dir, output_dir=output_dir)


def run_participant(args: argparse.Namespace, *, bids_dir: Path, output_dir: Path, work_dir: Path) -> int:
    """Participant level: find and check the runs, build the nipype workflow, run it, report."""
    from ..bids.filters import load_filter_file, strip_prefix
    from ..bids.runs import collect_pairs
    from ..pipeline.steps import inspect_run

    if args.bold_space is not None and not args.derivatives:
        raise UsageError("--bold-space was given without -d/--derivatives (the raw BOLD has no space to choose)",
                         hint="Add e.g. -d fmriprep=/data/derivatives/fmriprep, or drop --bold-space")
    if args.eeg_desc is not None and not args.derivatives:
        raise UsageError("--eeg-desc was given without -d/--derivatives (the raw EEG has no desc to choose)",
                         hint="Add e.g. -d eegprep=/data/derivatives/eegprep, or drop --eeg-desc")
    cfg = build_config(args)
    if args.model is not None:
        _require_checkpoint(args.model)
    if args.resource_monitor:
        try:
            import psutil  # noqa: F401  nipype's resource monitor needs it
        except ImportError:
            raise UsageError("--resource-monitor needs the psutil package",
                             hint='Install it: pip install psutil (or "spec2vol-bids[bench]")') from None
    participants = strip_prefix(args.participant_label, "sub-")
    filters = load_filter_file(args.bids_filter_file) if args.bids_filter_file else None
    only = args.reports_only or args.boilerplate_only  # nothing is processed: the input is not validated again
    if not args.skip_bids_validation and not only:
        _validate_input(bids_dir, participants)
    pairs = collect_pairs(bids_dir, participant_label=participants, session_label=args.session_label,
                          task_id=args.task_id, bids_filters=filters, database_dir=args.bids_database_dir)
    if args.derivatives:
        pairs = _match_derivatives(args, pairs)
    if args.reports_only:
        return _reports_only(args, bids_dir=bids_dir, output_dir=output_dir, pairs=pairs)

    # Cheap checks of every run before anything is written (headers, markers, channels, triggers, checkpoint).
    infos = {}
    for pair in pairs:
        LOGGER.info("checking %s", pair.name)
        infos[pair.name] = inspect_run(pair.source_eeg, pair.target_bold, repetition_time=pair.repetition_time,
                                       config=cfg, channels_tsv=pair.source_channels_tsv,
                                       events_tsv=pair.source_events_tsv)
    _check_targets_not_replaced(output_dir, pairs, cfg)
    device = "cpu"
    model_meta: list[dict] = []
    if args.model is not None:
        device, model_meta = _check_model(args, pairs, infos, cfg)

    from ..io.dataset import write_bidsignore, write_dataset_description

    if args.boilerplate_only:
        _make_dir(output_dir)
        try:
            write_dataset_description(output_dir, bids_dir=bids_dir, models=model_meta,
                                      derivatives=_derivatives_used(pairs))
            write_bidsignore(output_dir)
            written = _write_boilerplate(output_dir, cfg, pairs, infos, model_meta)
        except OSError as err:
            raise CantCreateError(f"cannot write into OUT_DIR {output_dir}: {err.strerror or err}",
                                  hint=WRITE_HINT) from None
        LOGGER.info("wrote the methods boilerplate: %s", ", ".join(str(p) for p in written))
        return 0
    run_uuid = f"{_dt.datetime.now():%Y%m%d-%H%M%S}_{uuid.uuid4()}"
    subjects = sorted({p.subject for p in pairs})
    _make_dir(work_dir)
    with _WorkDirLock(work_dir, subjects, run_uuid):
        _make_dir(output_dir)
        try:
            write_dataset_description(output_dir, bids_dir=bids_dir, models=model_meta,
                                      derivatives=_derivatives_used(pairs))
            write_bidsignore(output_dir)
        except OSError as err:
            raise CantCreateError(f"cannot write into OUT_DIR {output_dir}: {err.strerror or err}",
                                  hint=WRITE_HINT) from None
        log_dirs = {s: output_dir / f"sub-{s}" / "log" / run_uuid for s in subjects}
        return _run_workflow(args, output_dir=output_dir, work_dir=work_dir, pairs=pairs, infos=infos, cfg=cfg,
                             device=device, model_meta=model_meta, log_dirs=log_dirs, run_uuid=run_uuid)


def _derivatives_used(pairs) -> dict:
    """``{name: root}`` of the ``-d`` datasets the runs take their BOLD or EEG from (for DatasetLinks)."""
    used = {p.preproc.dataset: p.preproc.root for p in pairs if p.preproc is not None}
    used.update({p.eeg_preproc.dataset: p.eeg_preproc.root for p in pairs if p.eeg_preproc is not None})
    return used


def _match_derivatives(args: argparse.Namespace, pairs: list) -> list:
    """Attach to the runs the preprocessed BOLD and EEG of the ``-d`` datasets holding them (no fallback)."""
    from ..bids.eegprep import DEFAULT_EEG_DESC, dataset_holds, match_preproc_eeg
    from ..bids.fmriprep import match_preproc_bold

    holds = {name: dataset_holds(root) for name, root in args.derivatives.items()}
    for name, root in args.derivatives.items():
        if not any(holds[name].values()):
            raise NoInputError(f"the derivatives dataset {name}={root} holds neither preprocessed BOLD "
                               "(sub-*/func/*_desc-preproc_bold.nii.gz) nor EEG (sub-*/eeg/*_eeg.*)",
                               hint="Pass the folder of fMRIPrep's outputs or of the preprocessed EEG, or drop it")
    bold_sets = {n: r for n, r in args.derivatives.items() if holds[n]["bold"]}
    eeg_sets = {n: r for n, r in args.derivatives.items() if holds[n]["eeg"]}
    if args.bold_space is not None and not bold_sets:
        raise UsageError("--bold-space was given but no -d dataset holds preprocessed BOLD "
                         "(func/*_desc-preproc_bold.nii.gz)", hint="Add fMRIPrep's outputs with -d, or drop --bold-space")
    if args.eeg_desc is not None and not eeg_sets:
        raise UsageError("--eeg-desc was given but no -d dataset holds EEG (eeg/*_eeg.*)",
                         hint="Add the preprocessed EEG's dataset with -d, or drop --eeg-desc")
    if bold_sets:
        pairs = match_preproc_bold(pairs, bold_sets, space=args.bold_space or DEFAULT_BOLD_SPACE)
    if eeg_sets:
        pairs = match_preproc_eeg(pairs, eeg_sets, desc=args.eeg_desc or DEFAULT_EEG_DESC)
    return pairs


def _check_targets_not_replaced(output_dir: Path, pairs, cfg) -> None:
    """Refuse a run that would overwrite targets OUT_DIR holds from another BOLD series.

    Targets in different spaces have different names (``space-``/``res-`` entities), but a raw-BOLD target and one
    from fMRIPrep's ``func`` outputs (no space entity either), or two resolutions of one template resampled to the
    same model grid, share a name: the second run would silently replace the first's files.

    Raises
    ------
    UsageError
        A target of the run exists and its sidecar names another source file.
    """
    import json

    from ..io.names import bids_uri, sidecar_path
    from ..pipeline.steps import target_paths

    for pair in pairs:
        target, _ = target_paths(output_dir, pair.target_bold, cfg)
        side = sidecar_path(target)
        if not side.is_file():
            continue
        try:
            before = (json.loads(side.read_text(encoding="utf-8")).get("BoldSource") or {}).get("File")
        except (OSError, ValueError, AttributeError):
            continue
        now = pair.preproc.uri() if pair.preproc is not None else bids_uri(pair.bold_file)
        if before and before != now:
            raise UsageError(f"OUT_DIR already holds {target.name}, made from {before}; this run would replace it "
                             f"with one made from {now}",
                             hint="Give each source of targets (raw BOLD, -d dataset, --bold-space) its own OUT_DIR")


def _make_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CantCreateError(f"cannot create {err.filename or path}: {err.strerror or err}",
                              hint=WRITE_HINT) from None


def _require_checkpoint(path: Path) -> Path:
    """``--model`` must name a checkpoint file (a folder gets a message saying so, with the file to pass)."""
    candidate = path / "model.ckpt"
    hint = (f"Pass the checkpoint file, e.g. --model {candidate}" if candidate.is_file()
            else "Pass the model.ckpt written by `spec2vol_bids train` with --model")
    return require_path(path, "the --model checkpoint", expected="a checkpoint file", hint=hint)


class _WorkDirLock:
    """Hold ``WORK_DIR/.spec2vol-bids_sub-<label>.lock`` for each subject of the run (``filelock``, not blocking).

    Two runs of the same participant in one work directory would race on the same nipype node folders; the second
    one stops with :class:`~spec2vol_bids.errors.BusyError` (exit 75) naming the lock and the process holding it.
    Runs of different participants may share a work directory. The locks are released on exit, also after an
    error or an interrupt (and by the kernel if the process is killed); the empty lock files stay and do not
    block the next run.
    """

    def __init__(self, work_dir: Path, subjects: list[str], run_uuid: str):
        import filelock

        self.work_dir, self.run_uuid = work_dir, run_uuid
        self.locks = [(s, filelock.FileLock(str(work_dir / f".spec2vol-bids_sub-{s}.lock"), timeout=0))
                      for s in sorted(subjects)]
        self.held: list[Any] = []

    def __enter__(self):
        import filelock

        from ..utils import write_json

        try:
            for subject, lock in self.locks:
                try:
                    lock.acquire()
                except filelock.Timeout:
                    holder = self._holder(lock.lock_file)
                    raise BusyError(
                        f"another spec2vol-bids run{holder} is processing sub-{subject} with the work directory "
                        f"{self.work_dir} (it holds the lock {lock.lock_file})",
                        hint="Wait for it to finish, or give each concurrent run its own -w/--work-dir") from None
                except OSError as err:
                    raise CantCreateError(f"cannot create the lock {lock.lock_file}: {err.strerror or err}",
                                          hint=WRITE_HINT) from None
                self.held.append(lock)
                write_json(f"{lock.lock_file}.json", {"pid": os.getpid(), "host": _hostname(),
                                                      "run_uuid": self.run_uuid})
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        import contextlib

        for lock in reversed(self.held):
            with contextlib.suppress(OSError):
                os.unlink(f"{lock.lock_file}.json")
            lock.release()
        self.held = []

    @staticmethod
    def _holder(lock_file: str) -> str:
        import json

        try:
            info = json.loads(Path(f"{lock_file}.json").read_text(encoding="utf-8"))
            return f" (process {int(info['pid'])} on {info['host']})"
        except (OSError, ValueError, KeyError, TypeError):
            return ""


def _hostname() -> str:
    import socket

    return socket.gethostname()


def _run_workflow(args, *, output_dir, work_dir, pairs, infos, cfg, device, model_meta, log_dirs,
                  run_uuid) -> int:
    """Start the run logs, run the nipype workflow and write the reports (the work-dir lock is held)."""
    import time

    from ..workflows.crashfiles import crash_files

    subjects = sorted(log_dirs)
    try:
        handlers = _start_run_logs(log_dirs, args, cfg, pairs, run_uuid, device)
    except OSError as err:
        raise CantCreateError(f"cannot write the run logs into {output_dir}: {err.strerror or err}",
                              hint=WRITE_HINT) from None
    try:
        wf = _build_workflow(args, pairs, cfg, output_dir, work_dir, log_dirs, device)
        plugin = _plugin_settings(args, device)
        monitor = _ResourceMonitor() if args.resource_monitor else None
        if monitor is not None:
            plugin["plugin_args"]["status_callback"] = monitor
        LOGGER.info("running %d run(s) of %d subject(s) with nipype %s (work dir %s)", len(pairs),
                    len(subjects), plugin["plugin"], work_dir)
        started = time.time()
        failure: BaseException | None = None
        try:
            with _monitor_folder(work_dir if monitor is not None else None):
                wf.run(**plugin)
        except Exception as err:  # nipype raises RuntimeError after writing crash files
            failure = err
        if monitor is not None:
            monitor.write(log_dirs)
        crashes = crash_files(list(log_dirs.values()), started)
        prov = _provenance(args, output_dir, bids_dir=_resolve(args.bids_dir), device=device, run_uuid=run_uuid)
        report_errors = _participant_reports(output_dir, subjects, pairs, infos, cfg, log_dirs, crashes,
                                             model_meta[0]["Name"] if model_meta else None, provenance=prov)
        try:
            _write_boilerplate(output_dir, cfg, pairs, infos, model_meta)
        except OSError as err:
            LOGGER.error("could not write the methods boilerplate into %s: %s", output_dir / "logs", err)
            report_errors.append("boilerplate")
        if failure is not None or crashes:
            return _failure_exit(failure, crashes)
        if report_errors:
            return 1
        if args.clean_workdir:
            _clean_work_dir(work_dir / wf.name, subjects)
        LOGGER.info("participant level finished: outputs in %s", output_dir)
        return 0
    finally:
        for h in handlers:
            logging.getLogger("spec2vol_bids").removeHandler(h)
            logging.getLogger("nipype.workflow").removeHandler(h)
            h.close()


def _clean_work_dir(wf_dir: Path, subjects: list[str]) -> None:
    """``--clean-workdir``: delete this run's subject folders, and the workflow folder once no subject is left
    (runs of other participants may be using the same work directory)."""
    from ..workflows.base import _safe

    for subject in subjects:
        shutil.rmtree(wf_dir / f"sub_{_safe(subject)}_wf", ignore_errors=True)
    if wf_dir.is_dir() and not any(p.is_dir() and p.name.startswith("sub_") for p in wf_dir.iterdir()):
        shutil.rmtree(wf_dir, ignore_errors=True)


def _check_model(args, pairs, infos, cfg) -> tuple[str, list[dict]]:
    """Load the checkpoint once and refuse runs it does not fit (channels, frequency axis, grid)."""
    from ..train.checkpoint import check_run_compatible, load_checkpoint
    from ..utils import resolve_device, sha256_file

    _require_checkpoint(args.model)
    ckpt = load_checkpoint(args.model)
    for pair in pairs:
        info = infos[pair.name]
        check_run_compatible(ckpt, channels=info.channels, sfreq=info.sfreq, repetition_time=pair.repetition_time,
                             native_shape=info.native_shape, config=cfg)
    device = resolve_device(args.device)
    if device == "cpu":
        LOGGER.info("the model runs on the CPU")
    model = ckpt.get("model", {}) if isinstance(ckpt, dict) else {}
    meta = {"Name": str(model.get("name", "spec2vol")),
            "Description": f"trained checkpoint {args.model.name}, SHA-256 {sha256_file(args.model)}"}
    version = (ckpt.get("versions") or {}).get("spec2vol-bids") if isinstance(ckpt, dict) else None
    if version:
        meta["Version"] = str(version)
    return device, [meta]


def _start_run_logs(log_dirs, args, cfg, pairs, run_uuid, device) -> list[logging.Handler]:
    from ..utils import atomic_write, versions

    handlers: list[logging.Handler] = []
    execution = {
        "run_uuid": run_uuid, "version": __version__, "bids_dir": str(_resolve(args.bids_dir)),
        "output_dir": str(_resolve(args.output_dir)), "device": device,
        "model": str(_resolve(args.model)) if args.model else "",
        "participant_label": sorted({p.subject for p in pairs}),
        "runs": [p.name for p in pairs], "nprocs": args.nprocs or 0, "omp_nthreads": args.omp_nthreads or 0,
        "command": " ".join(sys.argv),
        # where each run's target BOLD comes from: the raw file, or a -d dataset's file in --bold-space
        "bold_sources": {p.name: p.bold_source() for p in pairs},
        # where each run's EEG comes from: the raw file, or a -d dataset's desc-<--eeg-desc> file
        "eeg_sources": {p.name: p.eeg_source() for p in pairs},
    }
    if args.derivatives:
        execution["derivatives"] = {name: str(root) for name, root in args.derivatives.items()}
        if any(p.preproc is not None for p in pairs):
            execution["bold_space"] = args.bold_space or DEFAULT_BOLD_SPACE
        if any(p.eeg_preproc is not None for p in pairs):
            execution["eeg_desc"] = pairs[0].eeg_preproc.desc
    import tomli_w

    text = cfg.to_toml() + "\n" + tomli_w.dumps({"execution": execution, "versions": versions()})
    fmt = logging.Formatter("%(asctime)s [%(name)s %(levelname)s] %(message)s")
    try:
        for d in log_dirs.values():
            d.mkdir(parents=True, exist_ok=True)
            atomic_write(d / "spec2vol.toml", text)
            handler = logging.FileHandler(d / "spec2vol.log", encoding="utf-8")
            handler.setFormatter(fmt)
            handler.setLevel(logging.DEBUG)
            logging.getLogger("spec2vol_bids").addHandler(handler)
            logging.getLogger("nipype.workflow").addHandler(handler)
            handlers.append(handler)
    except BaseException:
        for h in handlers:
            logging.getLogger("spec2vol_bids").removeHandler(h)
            logging.getLogger("nipype.workflow").removeHandler(h)
            h.close()
        raise
    return handlers


def _build_workflow(args, pairs, cfg, output_dir, work_dir, log_dirs, device):
    from nipype import config as ncfg
    from nipype import logging as nlogging

    ncfg.update_config({
        "execution": {"crashfile_format": "txt", "stop_on_first_crash": bool(args.stop_on_first_crash),
                      "remove_unnecessary_outputs": False, "hash_method": "timestamp",
                      "check_version": False, "poll_sleep_duration": 0.01},
        "monitoring": {"enabled": bool(args.resource_monitor)},
    })
    # seconds between the monitor's samples (nipype's minimum; its default of 1 s misses most of our short steps)
    ncfg.set("execution", "resource_monitor_frequency", "0.2")
    if args.resource_monitor:
        ncfg.enable_resource_monitor()
    else:
        ncfg.disable_resource_monitor()
    nlogging.update_logging(ncfg)
    from .main import library_level

    nlevel = library_level(args.verbose)
    for name in ("nipype.workflow", "nipype.interface", "nipype.utils"):
        logging.getLogger(name).setLevel(nlevel)

    from ..workflows import init_spec2vol_bids_wf

    nprocs = args.nprocs or os.cpu_count() or 1
    omp = args.omp_nthreads or max(1, min(nprocs - 1, 8))
    major, minor = __version__.split(".")[:2]
    wf = init_spec2vol_bids_wf(pairs=pairs, config=cfg, output_dir=output_dir, work_dir=work_dir,
                               model=args.model, device=device, batch_size=args.batch_size,
                               omp_nthreads=omp, crashdump_dirs=log_dirs, progress=sys.stderr.isatty(),
                               name=WORKFLOW_NAME.format(major=major, minor=minor))
    if args.write_graph:
        try:
            wf.write_graph(graph2use="colored", format="svg", simple_form=True)
        except Exception as err:  # graphviz missing is not a reason to stop
            LOGGER.warning("could not write the workflow graph (%s); is graphviz installed?", err)
    return wf


def _failure_exit(failure: BaseException | None, crashes: list[Path]) -> int:
    from ..workflows.crashfiles import error_from_crash

    errors = [e for e in (error_from_crash(c) for c in crashes) if e is not None]
    for c in crashes:
        LOGGER.error("a step failed; crash file: %s", c)
    if errors:
        for e in errors[1:]:
            LOGGER.error("%s", e.one_line())
        raise errors[0]
    detail = f" ({failure})" if failure is not None else ""
    raise _StepFailed(f"a processing step failed{detail}",
                      hint=f"See the crash file(s): {', '.join(str(c) for c in crashes) or 'none written'}")


class _StepFailed(Spec2VolError):
    exit_code = 1


def _participant_reports(output_dir, subjects, pairs, infos, cfg, log_dirs, crashes, model,
                         provenance=None) -> list[str]:
    """Write ``sub-<label>.html`` for each subject; returns the subjects whose report failed."""
    from ..pipeline.report_data import run_report
    from ..reports.participant import participant_report
    from ..utils import versions

    failed = []
    for subject in subjects:
        try:
            runs = [run_report(output_dir, p, infos.get(p.name), cfg) for p in pairs if p.subject == subject]
            errors = [c for c in crashes if log_dirs[subject] in c.parents]
            path = participant_report(output_dir, subject, [r for r in runs if r is not None], config=cfg,
                                      errors=errors, versions=versions(), model=model, provenance=provenance)
            LOGGER.info("wrote %s", path)
        except Exception as err:  # a broken report must not hide the derivatives; logged and counted
            LOGGER.error("the report of sub-%s failed: %s", subject, err, exc_info=LOGGER.isEnabledFor(10))
            log_dirs[subject].mkdir(parents=True, exist_ok=True)
            (log_dirs[subject] / "report.err").write_text(f"{type(err).__name__}: {err}\n", encoding="utf-8")
            failed.append(subject)
    return failed


def run_group(args: argparse.Namespace, *, bids_dir: Path, output_dir: Path) -> int:
    """Group level: metrics of every predicted run against its target, a TSV and an HTML report
    (``--reports-only``: the report again, from the table already in OUT_DIR)."""
    from ..pipeline.group import rebuild_group_report, run_group_level

    prov = _provenance(args, output_dir, bids_dir=bids_dir)
    if args.reports_only:
        LOGGER.info("wrote %s", rebuild_group_report(output_dir, provenance=prov))
        return 0
    return run_group_level(output_dir, bids_dir=bids_dir, participant_label=args.participant_label,
                           provenance=prov)


def _provenance(args, output_dir: Path, *, bids_dir: Path, device: str | None = None, run_uuid: str = ""):
    """The About section of this run's reports: command line, date, versions, input datasets."""
    from ..reports.provenance import provenance

    inputs: dict[str, Path] = {"BIDS_DIR": bids_dir}
    inputs.update({name: Path(root) for name, root in (args.derivatives or {}).items()})
    extra = {"Run": run_uuid} if run_uuid else {}
    if getattr(args, "model", None) is not None:
        from ..reports.provenance import relative_path

        extra["Model"] = relative_path(_resolve(args.model), output_dir)
    return provenance(output_dir, inputs=inputs, device=device, extra=extra)


def _write_boilerplate(output_dir: Path, cfg, pairs, infos, model_meta) -> list[Path]:
    """``OUT_DIR/logs/CITATION.md``, ``.bib`` and ``.html`` for these runs and settings."""
    from ..reports.methods import write_boilerplate
    from ..utils import versions

    sources: dict[str, int] = {}
    for pair in pairs:
        info = infos.get(pair.name)
        if info is not None:
            sources[info.onsets.source] = sources.get(info.onsets.source, 0) + 1
    return write_boilerplate(output_dir, cfg, n_runs=len(pairs) or None, onset_sources=sources or None,
                             versions=versions(), model=model_meta[0]["Name"] if model_meta else None)


def _reports_only(args, *, bids_dir: Path, output_dir: Path, pairs) -> int:
    """``--reports-only``: ``sub-<label>.html`` and the boilerplate again, from the derivatives in OUT_DIR.

    The settings are those the derivatives were made with (their spectrograms' ``config``), not the command
    line's. Runs without derivatives are left out; a subject without any is an error.

    Raises
    ------
    NoInputError
        OUT_DIR holds no derivatives of a selected subject.
    """
    import json

    from ..config import PreprocConfig
    from ..io.derivatives import PREDICTION, SPECTROGRAM
    from ..io.names import sidecar_path
    from ..io.spectrogram import load_spectrogram
    from ..pipeline.steps import inspect_run, target_paths

    done = [p for p in pairs if SPECTROGRAM.path(output_dir, p.eeg_file).is_file()]
    missing = sorted({p.subject for p in pairs} - {p.subject for p in done})
    if missing:
        raise NoInputError(f"OUT_DIR {output_dir} holds no derivatives of sub-{', sub-'.join(missing)}",
                           hint="Run the participant level without --reports-only first")
    cfg = PreprocConfig.from_dict(load_spectrogram(SPECTROGRAM.path(output_dir, done[0].eeg_file), data=False).config)
    infos, model = {}, None
    for pair in done:
        infos[pair.name] = inspect_run(pair.source_eeg, pair.target_bold, repetition_time=pair.repetition_time,
                                       config=cfg, channels_tsv=pair.source_channels_tsv,
                                       events_tsv=pair.source_events_tsv)
        pred = sidecar_path(PREDICTION.path(output_dir, target_paths(output_dir, pair.target_bold, cfg)[0]))
        if pred.is_file() and model is None:
            model = json.loads(pred.read_text(encoding="utf-8")).get("ModelName")
    subjects = sorted({p.subject for p in done})
    run_uuid = f"{_dt.datetime.now():%Y%m%d-%H%M%S}_{uuid.uuid4()}"
    log_dirs = {s: output_dir / f"sub-{s}" / "log" / run_uuid for s in subjects}
    prov = _provenance(args, output_dir, bids_dir=bids_dir, run_uuid=run_uuid)
    failed = _participant_reports(output_dir, subjects, done, infos, cfg, log_dirs, [], model, provenance=prov)
    _write_boilerplate(output_dir, cfg, done, infos, [{"Name": model}] if model else [])
    LOGGER.info("rebuilt the reports of %d participant(s) in %s", len(subjects), output_dir)
    return 1 if failed else 0


class _monitor_folder:
    """Run nipype from a scratch folder of the work directory while its resource monitor is on.

    nipype's monitor writes its samples (``.proc-<pid>_time-..._freq-...``) into the current directory of the
    process before each node enters its own folder; without this they would land where the user started the
    command. The folder is deleted afterwards (the measurements are in ``resource_monitor.tsv``).
    """

    def __init__(self, work_dir: Path | None):
        self.folder = None if work_dir is None else work_dir / f".resource_monitor_{os.getpid()}"
        self.previous: str | None = None

    def __enter__(self):
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.previous = os.getcwd()
            os.chdir(self.folder)
        return self

    def __exit__(self, *exc) -> None:
        if self.folder is not None:
            os.chdir(self.previous)
            shutil.rmtree(self.folder, ignore_errors=True)


class _ResourceMonitor:
    """nipype ``status_callback`` collecting what its resource monitor measured for every finished node."""

    COLUMNS = ("node", "start", "duration_s", "peak_memory_gb", "cpu_percent", "estimated_memory_gb", "n_procs")

    def __init__(self):
        self.rows: list[dict[str, Any]] = []

    def __call__(self, node, status) -> None:
        if status != "end":
            return
        runtime = getattr(getattr(node, "result", None), "runtime", None)

        def value(name):
            got = getattr(runtime, name, None) if runtime is not None else None
            return got if isinstance(got, (int, float)) else "n/a"

        self.rows.append({"node": node.fullname, "start": getattr(runtime, "startTime", None) or "n/a",
                          "duration_s": value("duration"), "peak_memory_gb": value("mem_peak_gb"),
                          "cpu_percent": value("cpu_percent"), "estimated_memory_gb": node.mem_gb,
                          "n_procs": node.n_procs})

    def write(self, log_dirs: dict[str, Path]) -> None:
        """``resource_monitor.tsv`` in each subject's log folder, with the nodes of that subject."""
        from ..io.tables import write_tsv
        from ..workflows.base import _safe

        docs = {"node": {"Description": "nipype node (workflow hierarchy)"},
                "start": {"Description": "start time (ISO 8601)"},
                "duration_s": {"Description": "wall time", "Units": "s"},
                "peak_memory_gb": {"Description": "peak resident memory measured by nipype's resource monitor",
                                   "Units": "GB"},
                "cpu_percent": {"Description": "peak CPU use measured by nipype's resource monitor (100: one core)"},
                "estimated_memory_gb": {"Description": "memory the node was scheduled with", "Units": "GB"},
                "n_procs": {"Description": "threads the node was scheduled with"}}
        for subject, folder in log_dirs.items():
            mine = [r for r in self.rows if f".sub_{_safe(subject)}_wf." in f".{r['node']}."]
            folder.mkdir(parents=True, exist_ok=True)
            write_tsv(folder / "resource_monitor.tsv", mine, self.COLUMNS, sidecar=docs)
