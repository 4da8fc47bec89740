"""Workflow builders: construction (names, fields, GPU flag), and small runs with Linear and MultiProc."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from nipype.pipeline.engine.utils import generate_expanded_graph

from spec2vol_bids.bids.runs import collect_pairs
from spec2vol_bids.config import PreprocConfig
from spec2vol_bids.io.spectrogram import load_spectrogram
from spec2vol_bids.workflows import (
    init_bold_target_wf,
    init_eeg_spectrogram_wf,
    init_spec2vol_bids_wf,
    init_spec2vol_wf,
)

RUN_INPUTS = {"eeg_file", "bold_file", "repetition_time", "channels_tsv", "events_tsv", "eeg_dataset", "eeg_desc"}


def _fields(wf, node):
    return set(wf.get_node(node).inputs.copyable_trait_names())


def test_builders_take_keyword_arguments_only():
    with pytest.raises(TypeError):
        init_eeg_spectrogram_wf(PreprocConfig())  # type: ignore[misc]
    with pytest.raises(TypeError):
        init_spec2vol_wf(PreprocConfig(), "/out")  # type: ignore[misc]


def test_eeg_and_bold_builders():
    eeg = init_eeg_spectrogram_wf(config=PreprocConfig(), name="my_eeg_wf")
    assert eeg.name == "my_eeg_wf"
    assert _fields(eeg, "inputnode") == RUN_INPUTS
    assert _fields(eeg, "outputnode") == {"spectrogram", "spectrogram_json", "onset_source"}
    cfg = eeg.get_node("spectrogram").inputs.config
    assert cfg == PreprocConfig().to_dict()  # settings travel as plain data, hashed by nipype
    bold = init_bold_target_wf(config={"bold": {"scaling": "zscore"}})
    assert _fields(bold, "inputnode") == {"bold_file", "repetition_time", "mask_file", "dataset", "space"}
    assert _fields(bold, "outputnode") == {"target", "target_json", "mask", "mask_json"}
    assert bold.get_node("target").inputs.config["bold"]["scaling"] == "zscore"


def _links(wf, src, dst):
    a, b = wf.get_node(src), wf.get_node(dst)
    return {pair for u, v, data in wf._graph.edges(data=True) if u is a and v is b for pair in data["connect"]}


@pytest.mark.parametrize("method, nodes", [
    ("none", {"artefact_qc"}),
    ("gradient", {"gradient_correction"}),
    ("gradient+bcg", {"artefact_correction", "qc_files"}),
])
def test_eeg_builder_corrects_artefacts_before_the_spectrogram(method, nodes):
    wf = init_eeg_spectrogram_wf(config={"correction": {"method": method}})
    extra = {n.name for n in wf._get_all_nodes()} - {"inputnode", "outputnode", "spectrogram"}
    assert extra == nodes
    if method == "none":  # only the QC, which reads the raw EEG; the spectrogram too
        assert _links(wf, "artefact_qc", "spectrogram") == {("qc_file", "qc_files")}
        assert ("eeg_file", "eeg_file") in _links(wf, "inputnode", "artefact_qc")
        return
    node = "artefact_correction" if method == "gradient+bcg" else "gradient_correction"
    assert ("eeg_file", "eeg_file") in _links(wf, "inputnode", node)
    assert ("out_file", "data_file") in _links(wf, node, "spectrogram")
    # the spectrogram keeps the original recording for its markers and Sources
    assert ("eeg_file", "eeg_file") in _links(wf, "inputnode", "spectrogram")
    if method == "gradient":
        assert wf.get_node(node).inputs.cardiac_qc is True  # no pulse step: the gradient step measures the heart
        assert _links(wf, node, "spectrogram") == {("out_file", "data_file"), ("qc_file", "qc_files")}
    else:  # one node for both corrections (the recording is written once); the QC files of both steps, in order
        assert _links(wf, node, "qc_files") == {("qc_file", "in1"), ("bcg_qc_file", "in2")}
        assert _links(wf, "qc_files", "spectrogram") == {("out", "qc_files")}
    # no QC at all when switched off
    quiet = init_eeg_spectrogram_wf(config={"correction": {"qc": False}})
    assert {n.name for n in quiet._get_all_nodes()} == {"inputnode", "outputnode", "spectrogram"}


@pytest.mark.parametrize("device, gpu", [("cpu", False), ("cuda", True)])
def test_spec2vol_wf_with_model_marks_the_gpu_node(tmp_path, device, gpu):
    ckpt = tmp_path / "m.ckpt"
    ckpt.write_bytes(b"x")
    wf = init_spec2vol_wf(config=None, output_dir=tmp_path / "out", model=ckpt, device=device, omp_nthreads=3)
    predict = wf.get_node("predict")
    assert predict.inputs.use_gpu is gpu and predict.is_gpu_node() is gpu
    assert predict.n_procs == 3 and predict.inputs.device == device
    assert {"spectrogram", "target", "mask", "prediction", "out_files"} == _fields(wf, "outputnode")
    # the device flags are not hashed: CPU and GPU runs share the cache
    h1 = predict.inputs.get_hashval()[1]
    predict.inputs.use_gpu, predict.inputs.batch_size = not gpu, 2
    assert predict.inputs.get_hashval()[1] == h1
    generate_expanded_graph(wf._create_flat_graph())


def test_spec2vol_wf_with_preproc_bold_feeds_the_target_from_it():
    wf = init_spec2vol_wf(output_dir="/tmp/out-x", use_preproc_bold=True)
    assert _fields(wf, "inputnode") == RUN_INPUTS | {"preproc_bold", "preproc_mask", "preproc_repetition_time",
                                                     "preproc_dataset", "preproc_space"}
    inputnode, bold_wf = wf.get_node("inputnode"), wf.get_node("bold_target_wf")
    links = {(src, dst) for u, v, data in wf._graph.edges(data=True) if u is inputnode and v is bold_wf
             for src, dst in data["connect"]}
    assert links == {("preproc_bold", "inputnode.bold_file"), ("preproc_mask", "inputnode.mask_file"),
                     ("preproc_repetition_time", "inputnode.repetition_time"),
                     ("preproc_dataset", "inputnode.dataset"), ("preproc_space", "inputnode.space")}
    # the EEG side still reads the raw BOLD (volume count, Sources)
    eeg_links = {dst for u, v, data in wf._graph.edges(data=True) if v is wf.get_node("eeg_spectrogram_wf")
                 for _, dst in data["connect"]}
    assert "inputnode.bold_file" in eeg_links
    assert _fields(init_spec2vol_wf(output_dir="/tmp/out-x"), "inputnode") == RUN_INPUTS


def test_spec2vol_wf_without_model_has_no_prediction():
    wf = init_spec2vol_wf(output_dir="/tmp/out-x")
    names = {n.fullname.split(".")[-1] for n in wf._get_all_nodes()}
    assert "predict" not in names and {"spectrogram", "target", "ds_run"} <= names


def test_bids_wf_fans_out_per_subject_and_run(tiny_bids, tmp_path):
    pairs = collect_pairs(tiny_bids, participant_label=["01", "02"])
    wf = init_spec2vol_bids_wf(pairs=pairs, output_dir=tmp_path / "out", work_dir=tmp_path / "work",
                               crashdump_dirs={"01": tmp_path / "c1", "02": tmp_path / "c2"})
    names = sorted(n for n in wf.list_node_names() if n.endswith(".spectrogram"))
    assert names == ["sub_01_wf.task_rest_wf.eeg_spectrogram_wf.spectrogram",
                     "sub_02_wf.task_rest_wf.eeg_spectrogram_wf.spectrogram"]
    node = wf.get_node("sub_01_wf.task_rest_wf.eeg_spectrogram_wf.spectrogram")
    assert node.config["execution"]["crashdump_dir"] == str(tmp_path / "c1")
    assert wf.base_dir == str(tmp_path / "work")
    generate_expanded_graph(wf._create_flat_graph())


def _set_run(wf, pair, eeg=True):
    wf.inputs.inputnode.bold_file = str(pair.bold_file)
    wf.inputs.inputnode.repetition_time = pair.repetition_time
    if eeg:
        wf.inputs.inputnode.eeg_file = str(pair.eeg_file)
        wf.inputs.inputnode.channels_tsv = str(pair.channels_tsv)


def test_eeg_wf_runs_linear_in_a_path_with_spaces(tiny_bids, tiny_derivatives, tmp_path):
    pair = collect_pairs(tiny_bids, participant_label=["01"])[0]
    wf = init_eeg_spectrogram_wf(config=PreprocConfig())
    _set_run(wf, pair)
    wf.base_dir = str(tmp_path / "work dir")
    res = wf.run(plugin="Linear")
    node = next(n for n in res.nodes() if n.name == "spectrogram")
    out = node.result.outputs.out_file
    assert node.result.outputs.onset_source == "markers"
    ref = tiny_derivatives / "sub-01" / "eeg" / "sub-01_task-rest_desc-stft_spectrogram.h5"
    np.testing.assert_array_equal(load_spectrogram(out).spectrogram, load_spectrogram(ref).spectrogram)


def test_bold_wf_runs_multiproc(tiny_bids, tiny_derivatives, tmp_path):
    pair = collect_pairs(tiny_bids, participant_label=["02"])[0]
    wf = init_bold_target_wf(config=PreprocConfig())
    _set_run(wf, pair, eeg=False)
    wf.base_dir = str(tmp_path / "work")
    res = wf.run(plugin="MultiProc", plugin_args={"n_procs": 2, "raise_insufficient": False})
    node = next(n for n in res.nodes() if n.name == "target")
    ref = tiny_derivatives / "sub-02" / "func" / "sub-02_task-rest_desc-target_bold.nii.gz"
    np.testing.assert_array_equal(np.asarray(nib.load(node.result.outputs.out_file).dataobj),
                                  np.asarray(nib.load(ref).dataobj))
