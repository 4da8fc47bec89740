"""nipype workflow builders (fMRIPrep / sdcflows style: ``init_*_wf`` with keyword-only arguments).

The builders read no global configuration: every setting is an argument, so the workflows can be embedded in
other pipelines::

    from spec2vol_bids.config import PreprocConfig
    from spec2vol_bids.workflows import init_spec2vol_wf

    wf = init_spec2vol_wf(config=PreprocConfig(), output_dir="/out")
    wf.inputs.inputnode.eeg_file = "/data/sub-01/eeg/sub-01_task-rest_eeg.vhdr"
    wf.inputs.inputnode.bold_file = "/data/sub-01/func/sub-01_task-rest_bold.nii.gz"
    wf.inputs.inputnode.repetition_time = 2.0
    wf.base_dir = "/work"
    wf.run()

:func:`init_spec2vol_bids_wf` is the BIDS-App's top level: a build-time loop over subjects and their paired runs
(as fMRIPrep's ``init_single_subject_wf``/``init_bold_wf``), one ``sub_<label>_wf`` per subject with one
``<run>_wf`` per run, each a :func:`init_spec2vol_wf`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from ..interfaces import (
    ArtefactQC,
    BOLDTarget,
    DerivativesDataSink,
    EEGSpectrogram,
    GradientBCGCorrection,
    GradientCorrection,
    Predict,
)

__all__ = [
    "DEFAULT_MEMORY_MIN_GB",
    "init_eeg_spectrogram_wf",
    "init_bold_target_wf",
    "init_spec2vol_wf",
    "init_spec2vol_bids_wf",
]

#: memory (GB) nipype budgets for a light node
DEFAULT_MEMORY_MIN_GB = 0.25

_RUN_INPUTS = ["eeg_file", "bold_file", "repetition_time", "channels_tsv", "events_tsv"]
#: where the EEG comes from, for the sidecar's BIDS URIs (unset: the raw dataset)
_EEG_SOURCE_INPUTS = ["eeg_dataset", "eeg_desc"]
#: inputs of a run whose targets come from a preprocessed BOLD series (``use_preproc_bold=True``)
_PREPROC_INPUTS = ["preproc_bold", "preproc_mask", "preproc_repetition_time", "preproc_dataset", "preproc_space"]
#: inputs of :func:`init_bold_target_wf`
_TARGET_INPUTS = ["bold_file", "repetition_time", "mask_file", "dataset", "space"]


def _config_dict(config) -> dict[str, Any]:
    from ..config import PreprocConfig

    return PreprocConfig.coerce(config).to_dict()  # validates


def init_eeg_spectrogram_wf(*, config=None, mem_gb: float = 1.0, progress: bool = False,
                            name: str = "eeg_spectrogram_wf") -> pe.Workflow:
    """Build a workflow computing the volume-locked EEG spectrogram of one run.

    With ``correction.method`` set (``--eeg-correction``), the EEG first goes through the gradient correction
    node (and the pulse-artefact correction node), which write the corrected recording into their working
    directories; the spectrogram reads its samples from there. Otherwise an artefact QC node measures the raw
    EEG (``correction.qc``). The QC numbers go into the spectrogram's sidecar.

    Parameters
    ----------
    config : PreprocConfig or dict, optional
        Preprocessing settings (default: the official pipeline). The ``eeg``, ``pairing`` and ``correction``
        sections are used.
    mem_gb : float
        Memory budget of the spectrogram and correction nodes (the recording is streamed; a few windows are in
        memory).
    progress : bool
        Show a progress bar over the windows (not part of the cache hash).
    name : str
        Workflow name.

    Inputs
    ------
    eeg_file
        Raw EEG data file (``.vhdr``, ``.edf``, ``.bdf``, ``.set``).
    bold_file
        The paired BOLD series (number of volumes; Sources).
    repetition_time
        ``RepetitionTime`` of the BOLD series (s).
    channels_tsv
        Optional ``channels.tsv`` of the run.
    events_tsv
        Optional ``events.tsv`` of the run.
    eeg_dataset, eeg_desc
        Optional: the name (in BIDS URIs) of the dataset holding ``eeg_file`` when it is preprocessed EEG from a
        derivatives dataset (default ``raw``), and its ``desc`` label.

    Outputs
    -------
    spectrogram
        ``*_desc-stft_spectrogram.h5`` (in the node directory, under its derivative name).
    spectrogram_json
        Its JSON sidecar.
    onset_source
        ``markers``, ``events.tsv`` or ``tr-fallback``.
    """
    from ..config import PreprocConfig

    cfg = PreprocConfig.coerce(config)
    cfg_dict = cfg.to_dict()
    workflow = pe.Workflow(name=name)
    inputnode = pe.Node(niu.IdentityInterface(fields=_RUN_INPUTS + _EEG_SOURCE_INPUTS), name="inputnode")
    outputnode = pe.Node(niu.IdentityInterface(fields=["spectrogram", "spectrogram_json", "onset_source"]),
                         name="outputnode")
    spectrogram = pe.Node(EEGSpectrogram(config=cfg_dict, progress=progress), name="spectrogram",
                          mem_gb=mem_gb)
    workflow.connect([
        (inputnode, spectrogram, [(f, f) for f in _RUN_INPUTS + _EEG_SOURCE_INPUTS]),
        (spectrogram, outputnode, [("out_file", "spectrogram"), ("out_sidecar", "spectrogram_json"),
                                   ("onset_source", "onset_source")]),
    ])
    method = cfg.correction.method
    if method != "none":
        # the recording streams through the correction block by block: a few blocks of memory, whatever its length
        if cfg.correction.bcg:  # both corrections in one node: the recording is written once
            both = pe.Node(GradientBCGCorrection(config=cfg_dict, progress=progress), name="artefact_correction",
                           mem_gb=mem_gb)
            qc_files = pe.Node(niu.Merge(2), name="qc_files", run_without_submitting=True)
            workflow.connect([
                (inputnode, both, [(f, f) for f in _RUN_INPUTS]),
                (both, qc_files, [("qc_file", "in1"), ("bcg_qc_file", "in2")]),
                (both, spectrogram, [("out_file", "data_file")]),
                (qc_files, spectrogram, [("out", "qc_files")]),
            ])
        else:
            gradient = pe.Node(GradientCorrection(config=cfg_dict, progress=progress), name="gradient_correction",
                               mem_gb=mem_gb)
            workflow.connect([
                (inputnode, gradient, [(f, f) for f in _RUN_INPUTS]),
                (gradient, spectrogram, [("out_file", "data_file"), ("qc_file", "qc_files")]),
            ])
    elif cfg.correction.qc:
        qc = pe.Node(ArtefactQC(config=cfg_dict, progress=progress), name="artefact_qc", mem_gb=mem_gb)
        workflow.connect([
            (inputnode, qc, [(f, f) for f in _RUN_INPUTS]),
            (qc, spectrogram, [("qc_file", "qc_files")]),
        ])
    return workflow


def init_bold_target_wf(*, config=None, mem_gb: float = 1.0, name: str = "bold_target_wf") -> pe.Workflow:
    """Build a workflow turning one BOLD series into model targets on the model grid, with a brain mask.

    Parameters
    ----------
    config : PreprocConfig or dict, optional
        Preprocessing settings (the ``bold`` section is used).
    mem_gb : float
        Memory budget of the node (about the native series in its on-disk type plus twice the target grid in
        float64).
    name : str
        Workflow name.

    Inputs
    ------
    bold_file
        BOLD series ``[X, Y, Z, T]``: the raw one, or a preprocessed one (e.g. fMRIPrep's ``desc-preproc_bold``).
    repetition_time
        ``RepetitionTime`` (s).
    mask_file
        Optional brain mask on the grid of ``bold_file`` (e.g. fMRIPrep's ``desc-brain_mask``); default: a
        mask computed from the data.
    dataset
        Optional name of the dataset holding ``bold_file`` in the sidecar's BIDS URIs (default ``raw``).
    space
        Optional ``--bold-space`` of a preprocessed ``bold_file``, recorded in the sidecar.

    Outputs
    -------
    target, target_json
        ``*_desc-target_bold.nii.gz`` (float32 ``[64, 64, D, T]``) and its sidecar.
    mask, mask_json
        ``*_desc-brain_mask.nii.gz`` (uint8 ``[64, 64, D]``) and its sidecar.
    """
    workflow = pe.Workflow(name=name)
    inputnode = pe.Node(niu.IdentityInterface(fields=_TARGET_INPUTS), name="inputnode")
    outputnode = pe.Node(niu.IdentityInterface(fields=["target", "target_json", "mask", "mask_json"]),
                         name="outputnode")
    target = pe.Node(BOLDTarget(config=_config_dict(config)), name="target", mem_gb=mem_gb)
    workflow.connect([
        (inputnode, target, [(f, f) for f in _TARGET_INPUTS]),
        (target, outputnode, [("out_file", "target"), ("out_sidecar", "target_json"), ("out_mask", "mask"),
                              ("out_mask_sidecar", "mask_json")]),
    ])
    return workflow


def init_spec2vol_wf(*, config=None, output_dir: str | os.PathLike, model: str | os.PathLike | None = None,
                     device: str = "auto", batch_size: int = 8, omp_nthreads: int = 1,
                     eeg_mem_gb: float = 1.0, bold_mem_gb: float = 1.0, progress: bool = False,
                     use_preproc_bold: bool = False, name: str = "spec2vol_wf") -> pe.Workflow:
    """Build the workflow of one paired EEG-fMRI run: spectrogram, target, (prediction) and derivatives.

    Parameters
    ----------
    config : PreprocConfig or dict, optional
        Preprocessing settings (default: the official Spec2VolCAMU-Net pipeline).
    output_dir : path-like
        Root of the derivative dataset; the run's files are copied there, atomically, once every step of the
        run succeeded.
    model : path-like, optional
        A trained checkpoint; when given, the run's BOLD volumes are also predicted from its EEG.
    device : {"auto", "cpu", "cuda"}
        Device of the prediction. ``"cuda"`` (or ``"auto"`` on a machine with a GPU) sets the prediction node's
        ``use_gpu`` input, so nipype's MultiProc schedules it against ``n_gpu_procs``.
    batch_size : int
        Pairs per forward pass of the model.
    omp_nthreads : int
        Threads of the prediction node (``n_procs``).
    eeg_mem_gb, bold_mem_gb : float
        Memory budgets of the spectrogram and target nodes.
    progress : bool
        Show progress bars on the long steps.
    use_preproc_bold : bool
        Make the targets from a preprocessed BOLD series of the run (``inputnode.preproc_*``, e.g. fMRIPrep's
        ``desc-preproc_bold``; the BIDS-App's ``-d/--derivatives``) instead of the raw ``bold_file``, which then
        only gives the EEG side its volume count and ``Sources``.
    name : str
        Workflow name.

    Inputs
    ------
    eeg_file
        EEG data file: the raw one, or preprocessed EEG from a derivatives dataset (``eeg_dataset``).
    eeg_dataset, eeg_desc
        Optional: name of the dataset holding a preprocessed ``eeg_file`` (e.g. ``eegprep``) and its ``desc``
        label, recorded in the spectrogram's sidecar (default: the raw dataset).
    bold_file
        Raw BOLD series.
    repetition_time
        ``RepetitionTime`` (s).
    channels_tsv
        Optional ``channels.tsv``.
    events_tsv
        Optional ``events.tsv`` of the EEG run.
    preproc_bold, preproc_repetition_time
        Only with ``use_preproc_bold``: the preprocessed series (same volumes as ``bold_file``) and its TR.
    preproc_mask
        Only with ``use_preproc_bold``: optional brain mask on the grid of ``preproc_bold``.
    preproc_dataset, preproc_space
        Only with ``use_preproc_bold``: the name of its dataset in BIDS URIs (e.g. ``fmriprep``) and its space
        (e.g. ``MNI152NLin2009cAsym``), recorded in the target's sidecar.

    Outputs
    -------
    spectrogram
        The spectrogram (``*_desc-stft_spectrogram.h5``, in the working directory).
    target
        The target BOLD series (``*_desc-target_bold.nii.gz``, in the working directory).
    mask
        The brain mask (``*_desc-brain_mask.nii.gz``, in the working directory).
    prediction
        The predicted BOLD series (``*_desc-spec2vol_bold.nii.gz``; only with ``model``).
    out_files
        Every file written to ``output_dir`` for this run (data files and JSON sidecars).
    """
    from nipype.utils.gpu_count import gpu_count

    from ..utils import resolve_device

    # nvidia-smi, not torch: building the graph stays light; "cuda" is kept for a GPU node without a check here
    device_used = resolve_device(device, gpu_count=gpu_count, strict=False)
    workflow = pe.Workflow(name=name)
    inputnode = pe.Node(niu.IdentityInterface(fields=_RUN_INPUTS + _EEG_SOURCE_INPUTS
                                              + (_PREPROC_INPUTS if use_preproc_bold else [])),
                        name="inputnode")
    outputnode = pe.Node(niu.IdentityInterface(fields=["spectrogram", "target", "mask", "prediction",
                                                       "out_files"]), name="outputnode")
    eeg_wf = init_eeg_spectrogram_wf(config=config, mem_gb=eeg_mem_gb, progress=progress)
    bold_wf = init_bold_target_wf(config=config, mem_gb=bold_mem_gb)
    n_files = 6 + (2 if model is not None else 0)
    merge = pe.Node(niu.Merge(n_files), name="merge_derivatives", run_without_submitting=True)
    ds_run = pe.Node(DerivativesDataSink(base_directory=str(Path(output_dir).absolute())), name="ds_run",
                     run_without_submitting=True, mem_gb=DEFAULT_MEMORY_MIN_GB)

    if use_preproc_bold:
        target_inputs = [("preproc_bold", "bold_file"), ("preproc_repetition_time", "repetition_time"),
                         ("preproc_mask", "mask_file"), ("preproc_dataset", "dataset"), ("preproc_space", "space")]
    else:
        target_inputs = [("bold_file", "bold_file"), ("repetition_time", "repetition_time")]
    workflow.connect([
        (inputnode, eeg_wf, [(f, f"inputnode.{f}") for f in _RUN_INPUTS + _EEG_SOURCE_INPUTS]),
        (inputnode, bold_wf, [(src, f"inputnode.{dst}") for src, dst in target_inputs]),
        (eeg_wf, merge, [("outputnode.spectrogram", "in1"), ("outputnode.spectrogram_json", "in2")]),
        (bold_wf, merge, [("outputnode.target", "in3"), ("outputnode.target_json", "in4"),
                          ("outputnode.mask", "in5"), ("outputnode.mask_json", "in6")]),
        (merge, ds_run, [("out", "in_files")]),
        (ds_run, outputnode, [("out_files", "out_files")]),
        (eeg_wf, outputnode, [("outputnode.spectrogram", "spectrogram")]),
        (bold_wf, outputnode, [("outputnode.target", "target"), ("outputnode.mask", "mask")]),
    ])
    if model is not None:
        predict = pe.Node(Predict(checkpoint=str(Path(model).absolute()), use_gpu=device_used == "cuda",
                                  device=device_used, batch_size=batch_size),
                          name="predict", n_procs=max(1, int(omp_nthreads)), mem_gb=2.0)
        workflow.connect([
            (inputnode, predict, [("eeg_file", "eeg_file"), ("bold_file", "bold_file")]),
            (eeg_wf, predict, [("outputnode.spectrogram", "spectrogram")]),
            (bold_wf, predict, [("outputnode.target", "target")]),
            (predict, merge, [("out_file", "in7"), ("out_sidecar", "in8")]),
            (predict, outputnode, [("out_file", "prediction")]),
        ])
    return workflow


def init_spec2vol_bids_wf(*, pairs: Sequence, config=None, output_dir: str | os.PathLike,
                          work_dir: str | os.PathLike | None = None, model: str | os.PathLike | None = None,
                          device: str = "auto", batch_size: int = 8, omp_nthreads: int = 1,
                          crashdump_dirs: dict[str, str | os.PathLike] | None = None, progress: bool = False,
                          name: str = "spec2vol_bids_wf") -> pe.Workflow:
    """Build the participant-level workflow of the BIDS-App: one sub-workflow per subject and per run.

    Parameters
    ----------
    pairs : sequence of RunPair
        Paired runs (:func:`spec2vol_bids.bids.runs.collect_pairs`); the targets of a run with a ``preproc``
        series (:func:`spec2vol_bids.bids.fmriprep.match_preproc_bold`) are made from it, and the spectrogram of
        a run with ``eeg_preproc`` (:func:`spec2vol_bids.bids.eegprep.match_preproc_eeg`) from that EEG.
    config : PreprocConfig or dict, optional
        Preprocessing settings.
    output_dir : path-like
        Root of the derivative dataset.
    work_dir : path-like, optional
        nipype working directory (``base_dir``); a rerun with the same folder reuses finished nodes.
    model, device, batch_size, omp_nthreads
        As for :func:`init_spec2vol_wf`.
    crashdump_dirs : dict, optional
        Subject label -> folder for that subject's crash files (``OUT_DIR/sub-<label>/log/<uuid>``).
    progress : bool
        Show progress bars on the long steps.
    name : str
        Workflow name.

    Returns
    -------
    Workflow
        With sub-workflows ``sub_<label>_wf`` / ``<run>_wf`` (e.g. ``sub_01_wf.task_rest_run_1_wf``).
    """
    workflow = pe.Workflow(name=name)
    if work_dir is not None:
        workflow.base_dir = str(Path(work_dir).absolute())
    by_subject: dict[str, list] = {}
    for pair in pairs:
        by_subject.setdefault(pair.subject, []).append(pair)
    for subject, runs in sorted(by_subject.items()):
        sub_wf = pe.Workflow(name=f"sub_{_safe(subject)}_wf")
        if crashdump_dirs and subject in crashdump_dirs:
            sub_wf.config["execution"] = {"crashdump_dir": str(crashdump_dirs[subject])}
        for pair in runs:
            preproc = pair.preproc
            run_wf = init_spec2vol_wf(config=config, output_dir=output_dir, model=model, device=device,
                                      batch_size=batch_size, omp_nthreads=omp_nthreads,
                                      bold_mem_gb=_bold_mem_gb(pair), progress=progress,
                                      use_preproc_bold=preproc is not None, name=pair.wf_name)
            run_wf.inputs.inputnode.eeg_file = str(pair.source_eeg)
            if pair.eeg_preproc is not None:
                run_wf.inputs.inputnode.eeg_dataset = pair.eeg_preproc.dataset
                run_wf.inputs.inputnode.eeg_desc = pair.eeg_preproc.desc
            run_wf.inputs.inputnode.bold_file = str(pair.bold_file)
            run_wf.inputs.inputnode.repetition_time = float(pair.repetition_time)
            if preproc is not None:
                run_wf.inputs.inputnode.preproc_bold = str(preproc.file)
                run_wf.inputs.inputnode.preproc_repetition_time = float(preproc.repetition_time)
                run_wf.inputs.inputnode.preproc_dataset = preproc.dataset
                run_wf.inputs.inputnode.preproc_space = preproc.space
                if preproc.mask is not None:
                    run_wf.inputs.inputnode.preproc_mask = str(preproc.mask)
            if pair.source_channels_tsv is not None:
                run_wf.inputs.inputnode.channels_tsv = str(pair.source_channels_tsv)
            if pair.source_events_tsv is not None:
                run_wf.inputs.inputnode.events_tsv = str(pair.source_events_tsv)
            if crashdump_dirs and subject in crashdump_dirs:
                for node in run_wf._get_all_nodes():
                    node.config = {"execution": {"crashdump_dir": str(crashdump_dirs[subject])}}
            sub_wf.add_nodes([run_wf])
        workflow.add_nodes([sub_wf])
    return workflow


def _safe(label: str) -> str:
    return re.sub(r"[^0-9a-zA-Z_]", "_", label)


def _bold_mem_gb(pair) -> float:
    """Memory estimate (GB) of the target node: the native series in float32 plus the target grid twice."""
    try:
        import nibabel as nib

        shape = nib.load(str(pair.target_bold)).shape
        n = 1
        for s in shape:
            n *= int(s)
        return max(DEFAULT_MEMORY_MIN_GB, (n * 4 + 2 * 64 * 64 * 64 * shape[3] * 8) / 1e9)
    except Exception:  # a corrupt file fails later, with a clear error, in the node itself
        return 1.0
