"""The documentation builds with warnings as errors and contains what the pages promise."""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_docs_build_without_warnings(tmp_path):
    out = tmp_path / "html"
    env = dict(os.environ, NIPYPE_NO_ET="1", MPLBACKEND="Agg")
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", "-d", str(tmp_path / "doctrees"),
         str(ROOT / "docs"), str(out)],
        capture_output=True, text=True, env=env, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, f"sphinx-build -W failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"

    raw = {name: (out / f"{name}.html").read_text(encoding="utf-8")
           for name in ("index", "quickstart", "usage", "scanner", "outputs", "using_outputs", "workflows", "examples",
                        "method", "models", "napari", "realtime", "gpu", "cluster", "faq", "benchmarks", "api",
                        "changes")}
    # the pages' text (code blocks are split into highlighted spans), plus the raw HTML for links and images
    pages = {name: html.unescape(re.sub(r"<[^>]+>", "", page)) + page for name, page in raw.items()}
    # every page is in the toctree
    for name in pages:
        if name != "index":
            assert f'href="{name}.html"' in pages["index"], f"{name} is not in the index toctree"
    # the models page shows the ablation, the production runs and the locality figure (issue 12)
    for text in ("spec2vol-lowrank", "demeaned-mse", "oracle: true sources", "margin_over_ridge", "receptive_field.png"):
        assert text in pages["models"], text
    # the CLI reference is generated from the real parsers
    for option in ("--participant-label", "--skip-bids-validation", "--model", "--volume-marker", "--device"):
        assert option in pages["usage"], option
    assert "--test-subjects" in pages["usage"] and "--official-h5" in pages["usage"]
    for option in ("--reports-only", "--boilerplate-only", "--resource-monitor", "--keep-bad-channels", "16GB"):
        assert option in pages["usage"], option
    # the real-time page: both commands' options from their parsers, the robustness table, the GPU benchmark
    for text in ("--marker-stream", "--trigger-channel", "--roi-mask", "--idle-timeout", "--drop-marker",
                 "trigger-filled", "StreamEvents", "bench_realtime --synthetic --device cuda", "130"):
        assert text in pages["realtime"], text
    # using the outputs: the example's code with each tool
    for text in ("BIDSLayout(bids, derivatives=out)", "maskers.NiftiMasker", "read_spectrogram(spectrogram.path)",
                 'plugin="spec2vol-bids"', "VolumeIndices"):
        assert text in pages["using_outputs"], text
    assert "space-T1w_res-model" in pages["outputs"] and "SpatialReference" in pages["outputs"]
    # outputs: every derivative with its sidecar
    for text in ("desc-stft_spectrogram.h5", "desc-target_bold", "desc-brain_mask", "desc-spec2vol_bold",
                 "ModelSHA256", "group_metrics.tsv", "dynamic_correlation", ".bidsignore", "crash-", "sha256"):
        assert text in pages["outputs"], text
    # workflow graphs and docstrings
    for name in ("spec2vol_wf", "eeg_spectrogram_wf", "bold_target_wf"):
        assert f"graph_{name}.png" in pages["workflows"]
        assert (out / "_images" / f"graph_{name}.png").is_file()
    assert "init_spec2vol_wf" in pages["workflows"] and "outputnode" in pages["workflows"]
    assert "channels_tsv" in pages["workflows"], "the Inputs section of the init_*_wf docstrings is not rendered"
    # the examples are included from examples/
    for script in ("embed_workflow", "train_from_python", "open_in_napari", "convert_noddi_style"):
        assert (ROOT / "examples" / f"{script}.py").is_file()
        assert f"{script}.py" in pages["examples"]
    assert "init_spec2vol_wf" in pages["examples"] and "write_raw_bids" in pages["examples"]
    assert (out / "_images" / "example_open_in_napari.png").is_file()
    # napari page with its real screenshot
    assert "napari_widget.png" in pages["napari"]
    assert (out / "_images" / "napari_widget.png").stat().st_size > 10_000
    # GPU notes, FAQ, benchmarks
    for text in ("MAMBA_FORCE_BUILD", "SPEC2VOL_SCAN_BACKEND", "--gpus all", "--nv", "not run in CI"):
        assert text in pages["gpu"], text
    for text in ("OMP_WAIT_POLICY", "R128", "exit code", "5 kHz"):
        assert text in pages["faq"], text
    assert "Machine:" in pages["benchmarks"]
    # clusters: torchrun, folds, the SLURM examples, nipype plugins, Apptainer, the container test, the GPU check
    for text in ("torchrun --standalone --nproc-per-node", "train collect MODEL_DIR", "participant_array.sbatch",
                 "--use-plugin", "plugin: SLURM", "apptainer run --cleanenv", "apptainer/spec2vol-bids.def",
                 "make docker-test", "--network none", "NOT RUN", "gpu_ddp_check.py", "not run yet"):
        assert text in pages["cluster"], text
    assert "spec2vol_bids train collect" in pages["usage"] and "bench_ddp" in pages["benchmarks"]
    for path in ("examples/slurm/participant_array.sbatch", "examples/slurm/train_folds.sbatch",
                 "examples/slurm/nipype_slurm.yml", "apptainer/spec2vol-bids.def", ".ci/docker-test",
                 "benchmarks/gpu_ddp_check.py"):
        assert (ROOT / path).is_file(), path
    assert "Docker" in pages["quickstart"] and "own BIDS data" in pages["quickstart"]
