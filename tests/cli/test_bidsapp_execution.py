"""fMRIPrep's execution options: ``--boilerplate-only``, ``--reports-only``, ``--resource-monitor``."""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

import pytest

from spec2vol_bids.cli.main import main
from spec2vol_bids.io.tables import read_tsv
from spec2vol_bids.reports.methods import REFERENCES

from .test_bidsapp import copy_dataset, run_cli

pytestmark = pytest.mark.slow


def data_hashes(root: Path) -> dict[str, str]:
    """Hashes of the derivatives (not reports, figures or logs)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if p.is_file() and p.parent.name in ("eeg", "func")}


def test_boilerplate_only_writes_the_methods_with_references_and_nothing_else(tiny_bids, tmp_path):
    out = tmp_path / "out"
    assert main([str(tiny_bids), str(out), "participant", "--boilerplate-only", "--participant-label", "01", "02",
                 "--taper", "hann", "-w", str(tmp_path / "work")]) == 0
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        ".bidsignore", "dataset_description.json", "logs/CITATION.bib", "logs/CITATION.html", "logs/CITATION.md"]
    assert not (tmp_path / "work").exists()  # no workflow
    md = (out / "logs" / "CITATION.md").read_text()
    assert "Each of the 2 paired EEG-fMRI runs" in md and "periodic Hann taper" in md  # the run's settings
    keys = re.findall(r"@([A-Za-z0-9_]+)", md)
    assert {"he2025spec2vol", "gramfort2013mne", "gorgolewski2016bids", "pernet2019eegbids",
            "gorgolewski2011nipype"} <= set(keys)
    # every key cited has its BibTeX entry, and only those are in the .bib
    bib = (out / "logs" / "CITATION.bib").read_text()
    assert set(re.findall(r"^@\w+\{([A-Za-z0-9_]+),", bib, flags=re.M)) == set(keys)
    html = (out / "logs" / "CITATION.html").read_text()
    for key in set(keys):
        assert f'id="ref-{key}"' in html and f'href="#ref-{key}"' in html
        assert REFERENCES[key][0].split(".")[0] in html
    assert "[@" not in html


def test_boilerplate_only_is_a_participant_option(tiny_bids, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    assert main([str(tiny_bids), str(out), "group", "--boilerplate-only"]) == 64
    assert "participant-level option" in capsys.readouterr().err


def test_reports_only_rebuilds_reports_from_the_derivatives(tiny_bids, tiny_derivatives, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(tiny_derivatives, out)
    before = data_hashes(out)
    report = out / "sub-02.html"
    old = report.read_text()
    report.unlink()
    figures = sorted(p.name for p in (out / "sub-02" / "figures").glob("*.png"))
    shutil.rmtree(out / "sub-02" / "figures")
    work = tmp_path / "work"
    assert main([str(tiny_bids), str(out), "participant", "--participant-label", "02", "--reports-only",
                 "-w", str(work)]) == 0
    assert not work.exists() and data_hashes(out) == before  # nothing computed again
    new = report.read_text()
    for section in ("summary", "alignment", "spectrogram", "artefacts", "target", "methods", "errors", "about"):
        assert f'<section id="{section}">' in new and f'<section id="{section}">' in old
    # the same figures again: alignment, spectrogram, artefact QC (the default workflow measures it), target
    assert sorted(p.name for p in (out / "sub-02" / "figures").glob("*.png")) == figures
    assert len(figures) == 4 and "sub-02_task-rest_desc-artefacts_eeg.png" in figures
    assert "--reports-only" in new and (out / "logs" / "CITATION.md").is_file()
    # a participant without derivatives is an error, not an empty report
    bids = copy_dataset(tiny_bids, tmp_path / "bids", subjects=("01",))
    empty = tmp_path / "empty"
    assert main([str(bids), str(empty), "participant", "--reports-only"]) == 66


def test_group_reports_only(tiny_bids, tmp_path):
    from .test_bidsapp_model import _checkpoint

    bids = copy_dataset(tiny_bids, tmp_path / "bids", subjects=("01",))
    out = tmp_path / "out"
    from spec2vol_bids.io.spectrogram import load_spectrogram

    assert run_cli(bids, out, tmp_path / "work") == 0
    channels = load_spectrogram(next(out.rglob("*_spectrogram.h5")), data=False).channels
    ckpt = _checkpoint(tmp_path / "model.ckpt", channels)
    assert run_cli(bids, out, tmp_path / "work", "--model", ckpt, "--device", "cpu") == 0
    assert main([str(bids), str(out), "group"]) == 0
    table = (out / "group_metrics.tsv").read_bytes()
    (out / "group.html").unlink()
    assert main([str(bids), str(out), "group", "--reports-only"]) == 0
    assert (out / "group_metrics.tsv").read_bytes() == table  # not recomputed
    html = (out / "group.html").read_text()
    ssim = float(next(r for r in read_tsv(out / "group_metrics.tsv") if r["level"] == "run")["ssim"])
    assert f"{ssim:.4f}" in html and '<section id="about">' in html
    (out / "group_metrics.tsv").unlink()
    assert main([str(bids), str(out), "group", "--reports-only"]) == 66


def test_resource_monitor_records_every_node(tiny_bids, tmp_path, monkeypatch):
    pytest.importorskip("psutil")
    bids = copy_dataset(tiny_bids, tmp_path / "bids", subjects=("01",))
    out = tmp_path / "out"
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    assert run_cli(bids, out, tmp_path / "work", "--resource-monitor") == 0
    # nipype's monitor samples (.proc-*) land in a scratch folder of the work dir, deleted after the run
    assert list(cwd.iterdir()) == [] and not list((tmp_path / "work").glob(".resource_monitor_*"))
    assert Path.cwd() == cwd
    (table,) = out.glob("sub-01/log/*/resource_monitor.tsv")
    rows = {r["node"].rsplit(".", 1)[-1]: r for r in read_tsv(table)}
    assert {"spectrogram", "target", "ds_run"} <= set(rows)
    assert all(r["node"].startswith("spec2vol_bids_") and ".sub_01_wf." in r["node"] for r in rows.values())
    for name in ("spectrogram", "target"):
        assert float(rows[name]["duration_s"]) > 0
        assert 0 < float(rows[name]["peak_memory_gb"]) < 64  # measured by nipype's monitor (psutil)
    assert table.with_suffix(".json").is_file()
