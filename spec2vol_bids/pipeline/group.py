"""Group level: compare every predicted BOLD run with its target and summarise per run and per subject.

Reads the participant-level derivatives of ``OUT_DIR`` (``*_desc-spec2vol_bold.nii.gz`` with its sidecar's
``VolumeIndices``, ``*_desc-target_bold.nii.gz`` and ``*_desc-brain_mask.nii.gz``) and scores each run with
:func:`spec2vol_bids.train.metrics.run_metrics`: the published SSIM and PSNR (per predicted volume, averaged over
the run) and the dynamic correlation (per-voxel Pearson r over time inside the brain mask, averaged over voxels).
Writes ``OUT_DIR/group_metrics.tsv`` (+ ``.json`` column descriptions) and ``OUT_DIR/group.html``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ..bids.filters import strip_prefix
from ..errors import DataError, NoInputError, NoMatchError
from ..io.derivatives import GROUP_METRICS, MASK, PREDICTION, TARGET
from ..io.names import parse_entities, sidecar_path
from ..io.tables import write_tsv

__all__ = ["METRIC_COLUMNS", "find_predictions", "score_run", "group_metrics", "write_group_metrics",
           "run_group_level"]

LOGGER = logging.getLogger("spec2vol_bids")
#: columns of ``group_metrics.tsv`` in order. No column is named as a BIDS entity (``subject``, ``session``,
#: ``run``, ...): PyBIDS indexes the keys of the column descriptions (``group_metrics.json``) as metadata of the
#: table, and such keys would then pose as entities of the dataset (``BIDSLayout.get_sessions()``). As in MRIQC's
#: group tables, a run is named by ``bids_name``; ``participant_id`` and ``session_id`` are spelled as in
#: ``participants.tsv`` and ``sessions.tsv``.
METRIC_COLUMNS = ("level", "bids_name", "participant_id", "session_id", "n_volumes", "ssim", "psnr",
                  "dynamic_correlation")
_COLUMN_DOCS = {
    "level": {"Description": "'run' for one run, 'subject' for the mean over a subject's runs, 'group' for the "
                             "mean over subjects"},
    "bids_name": {"Description": "the predicted run: its file name up to the desc entity (subject, session, "
                                 "task, acquisition, run, space and resolution entities); sub-<label> for a "
                                 "subject row, 'group' for the group row"},
    "participant_id": {"Description": "sub-<label> of the run or subject (n/a in the group row)"},
    "session_id": {"Description": "ses-<label> of the run (n/a without sessions and in summary rows)"},
    "n_volumes": {"Description": "number of predicted volumes compared"},
    "ssim": {"Description": "SSIM, 2-D Gaussian window (11, sigma 1.5) over slices, data range 1, mean over "
                            "volumes (published definition)"},
    "psnr": {"Description": "PSNR over each whole volume, range max(t.max, 0) - min(t.min, 0), mean over volumes",
             "Units": "dB"},
    "dynamic_correlation": {"Description": "Pearson r of predicted vs measured time courses per voxel in the "
                                           "brain mask, mean over voxels"},
}


def find_predictions(output_dir: str | os.PathLike, participant_label: Iterable[str] | None = None
                     ) -> list[dict[str, Path]]:
    """Predicted runs of a derivative folder with their target and mask, sorted by name.

    Returns
    -------
    list of dict
        ``{"prediction", "target", "mask", "entities"}``; ``mask`` may be ``None``.
    """
    out = Path(output_dir)
    labels = strip_prefix(participant_label, "sub-")
    found = []
    for pred in sorted(out.glob(f"sub-*/**/{PREDICTION.datatype}/{PREDICTION.pattern}")):
        ents = parse_entities(pred)
        if labels and ents.get("sub") not in labels:
            continue
        target, mask = TARGET.sibling(pred), MASK.sibling(pred)
        if not target.is_file():
            LOGGER.warning("%s has no target %s; skipped", pred.name, target.name)
            continue
        found.append({"prediction": pred, "target": target, "mask": mask if mask.is_file() else None,
                      "entities": ents})
    return found


def score_run(prediction: str | os.PathLike, target: str | os.PathLike, mask: str | os.PathLike | None = None,
              *, per_volume: bool = False) -> dict[str, Any]:
    """SSIM, PSNR and dynamic correlation of one predicted run against its target, from their files.

    The predicted volume ``j`` is compared with target volume ``VolumeIndices[j]`` (from the prediction's
    sidecar; all volumes in order when it is absent), with :func:`spec2vol_bids.train.metrics.run_metrics`.

    Parameters
    ----------
    prediction, target, mask : path-like
        The run's ``*_desc-spec2vol_bold.nii.gz``, ``*_desc-target_bold.nii.gz`` and (optional) brain mask.
    per_volume : bool
        Also return the per-volume scores and the correlation map (see
        :func:`~spec2vol_bids.train.metrics.run_metrics`) and ``volume_indices``.

    Raises
    ------
    DataError
        The grids differ, or the indices point outside the target.
    """
    import nibabel as nib

    from ..train.metrics import from_nifti_layout, run_metrics

    pred = np.asarray(nib.load(str(prediction)).dataobj, dtype=np.float32)  # [X, Y, Z, n]
    tgt = np.asarray(nib.load(str(target)).dataobj, dtype=np.float32)  # [X, Y, Z, T]
    side = sidecar_path(prediction)
    meta = json.loads(side.read_text(encoding="utf-8")) if side.is_file() else {}
    idx = np.asarray(meta.get("VolumeIndices", range(pred.shape[-1])), dtype=int)
    if pred.shape[:3] != tgt.shape[:3]:
        raise DataError(f"{Path(prediction).name} has grid {pred.shape[:3]} but its target {tgt.shape[:3]}",
                        hint="Re-run the participant level with the same settings for both")
    if idx.size != pred.shape[-1] or (idx.size and (idx.min() < 0 or idx.max() >= tgt.shape[-1])):
        raise DataError(f"{Path(prediction).name}: VolumeIndices do not match its {pred.shape[-1]} volumes or "
                        f"the {tgt.shape[-1]} target volumes", hint="Re-run the participant level")
    m = None
    if mask is not None:
        m = from_nifti_layout(np.asarray(nib.load(str(mask)).dataobj).astype(bool))  # [Z, X, Y]
    # model layout [n, Z, X, Y]
    out = run_metrics(from_nifti_layout(pred), from_nifti_layout(tgt[..., idx]), m, per_volume=per_volume)
    if per_volume:
        out["volume_indices"] = idx
    return out


def group_metrics(predictions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of ``group_metrics.tsv``: one per run, then the mean per subject, then the mean over subjects."""
    rows: list[dict[str, Any]] = []
    for item in predictions:
        ents = item["entities"]
        name = "_".join(f"{k}-{v}" for k, v in ents.items() if k != "desc")
        row = {"level": "run", "bids_name": name, "participant_id": f"sub-{ents.get('sub')}",
               "session_id": f"ses-{ents['ses']}" if ents.get("ses") else "n/a"}
        row.update(score_run(item["prediction"], item["target"], item["mask"]))
        rows.append(row)
    subjects = sorted({r["participant_id"] for r in rows})
    subject_rows = []
    for s in subjects:
        mine = [r for r in rows if r["participant_id"] == s]
        subject_rows.append({"level": "subject", "bids_name": s, "participant_id": s, "session_id": "n/a",
                             "n_volumes": int(sum(r["n_volumes"] for r in mine)),
                             **{k: float(np.nanmean([r[k] for r in mine])) for k in
                                ("ssim", "psnr", "dynamic_correlation")}})
    group = [{"level": "group", "bids_name": "group", "participant_id": "n/a", "session_id": "n/a",
              "n_volumes": int(sum(r["n_volumes"] for r in rows)),
              **{k: float(np.nanmean([r[k] for r in subject_rows])) for k in ("ssim", "psnr", "dynamic_correlation")}}
             ] if subject_rows else []
    return rows + subject_rows + group


def write_group_metrics(output_dir: str | os.PathLike, rows: list[dict[str, Any]]) -> Path:
    """Write ``group_metrics.tsv`` (+ ``group_metrics.json`` describing the columns), atomically."""
    return write_tsv(Path(output_dir) / GROUP_METRICS, rows, METRIC_COLUMNS, sidecar=_COLUMN_DOCS)


def run_group_level(output_dir: str | os.PathLike, *, bids_dir: str | os.PathLike | None = None,
                    participant_label: Iterable[str] | None = None, provenance=None) -> int:
    """The group level of the BIDS-App; returns the exit code.

    ``provenance`` is the About section of ``group.html`` (:func:`spec2vol_bids.reports.provenance.provenance`).

    Raises
    ------
    NoInputError
        ``OUT_DIR`` holds no participant-level outputs.
    NoMatchError
        The requested participants have no outputs.
    """
    out = Path(output_dir)
    targets = sorted(out.glob(f"sub-*/**/{TARGET.datatype}/{TARGET.pattern}"))
    if not targets:
        raise NoInputError(f"{out} holds no participant-level outputs (*_desc-target_bold.nii.gz)",
                           hint="Run the participant level into this OUT_DIR first")
    labels = strip_prefix(participant_label, "sub-")
    if labels:
        have = {parse_entities(t).get("sub") for t in targets}
        missing = [label for label in labels if label not in have]
        if missing:
            raise NoMatchError(f"participant(s) {', '.join(missing)} have no outputs in {out}",
                               hint="Run the participant level for them first")
    predictions = find_predictions(out, labels)
    rows: list[dict[str, Any]] = []
    if not predictions:
        LOGGER.warning("no predicted runs (*_desc-spec2vol_bold.nii.gz) in %s: no metrics. Run the participant "
                       "level with --model CKPT to predict BOLD from EEG", out)
    else:
        from tqdm.auto import tqdm

        LOGGER.info("computing metrics of %d predicted run(s)", len(predictions))
        rows = group_metrics(list(tqdm(predictions, desc="runs", disable=len(predictions) < 3)))
        dest = write_group_metrics(out, rows)
        LOGGER.info("wrote %s", dest)
    _group_report(out, rows, provenance)
    return 0


def rebuild_group_report(output_dir: str | os.PathLike, *, provenance=None) -> Path:
    """``group.html`` again from the ``group_metrics.tsv`` in ``output_dir`` (``--reports-only``).

    Raises
    ------
    NoInputError
        There is no ``group_metrics.tsv`` (the group level has not run, or there were no predictions).
    """
    from ..io.tables import read_tsv_frame

    table = Path(output_dir) / GROUP_METRICS
    if not table.is_file():
        raise NoInputError(f"{table} does not exist", hint="Run the group level without --reports-only first")
    path = _group_report(Path(output_dir), read_tsv_frame(table).to_dict("records"), provenance)
    if path is None:
        raise NoInputError(f"{table} has no run rows", hint="Run the group level without --reports-only first")
    return path


def _group_report(out: Path, rows, provenance=None) -> Path | None:
    from ..reports.group import group_report

    runs = [r for r in rows if r.get("level") == "run"]
    if not runs:
        return None
    table = [{k: v for k, v in r.items() if k != "level"} for r in runs]
    path = group_report(out, table, metrics=["ssim", "psnr", "dynamic_correlation"], provenance=provenance)
    LOGGER.info("wrote %s", path)
    return path
