"""Every HTML report, opened in a real headless browser (Chromium): it renders, its figures decode, nothing errs,
and it names no machine path.

Screenshots go to a temporary folder, or to ``$SPEC2VOL_SCREENSHOTS`` when set (to look at them).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from spec2vol_bids.cli.main import main

from ..browser import assert_renders, chromium_available, render
from ..tools import require_tool

pytestmark = pytest.mark.slow


@pytest.fixture
def needs_chromium():
    require_tool(chromium_available(), "chromium (Debian package chromium)")


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = os.environ.get("SPEC2VOL_SCREENSHOTS")
    path = Path(folder) if folder else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def reports(tiny_bids, tiny_derivatives, tmp_path_factory):
    """A participant report with predictions, the group report, the methods boilerplate and a training report."""
    from spec2vol_bids.io.spectrogram import load_spectrogram

    from ..cli.test_bidsapp import copy_dataset, run_cli
    from ..cli.test_bidsapp_model import _checkpoint
    from ..train.conftest import make_derivatives

    root = tmp_path_factory.mktemp("browser")
    bids = copy_dataset(tiny_bids, root / "bids", subjects=("01", "02"))
    channels = load_spectrogram(next(tiny_derivatives.rglob("sub-01_*_spectrogram.h5")), data=False).channels
    ckpt = _checkpoint(root / "model.ckpt", channels)
    out = root / "out"
    assert run_cli(bids, out, root / "work", "--model", ckpt, "--device", "cpu") == 0
    assert main([str(bids), str(out), "group"]) == 0
    derivs = make_derivatives(root / "derivs")
    model_dir = root / "training"
    assert main(["train", str(derivs), str(model_dir), "--model", "spec2vol", "--preset", "tiny", "--baselines",
                 "ridge", "--cv", "split", "--test-subjects", "03", "--epochs", "1", "--batch-size", "8",
                 "--warmup-steps", "1", "--device", "cpu", "--no-progress"]) == 0
    return {"root": root, "sub-01.html": out / "sub-01.html", "group.html": out / "group.html",
            "CITATION.html": out / "logs" / "CITATION.html", "training report.html": model_dir / "report.html"}


@pytest.mark.parametrize("name, min_images", [("sub-01.html", 4), ("group.html", 1), ("training report.html", 2),
                                              ("CITATION.html", 0)])
def test_report_renders_in_chromium(needs_chromium, reports, shots, name, min_images):
    path = reports[name]
    seen = assert_renders(path, shots / f"{name.replace(' ', '_')}.png", min_images=min_images)
    assert seen.height > 600
    html = path.read_text(encoding="utf-8")
    # provenance, with paths relative to the report's folder and no machine path
    assert str(reports["root"]) not in html and str(Path.home()) + "/" not in html
    if name != "CITATION.html":
        about = html[html.index('<section id="about">'):]
        for row in ("Command", "Date", "spec2vol-bids", "Python", "Platform", "Libraries", "Input dataset"):
            assert f"<td>{row}" in about, row
        command = re.search(r"<td>Command</td><td>(.*?)</td>", about).group(1)
        assert command.startswith(("spec2vol_bids ../bids . participant", "spec2vol_bids ../bids . group",
                                   "spec2vol_bids train ../derivs . "))
    if name in ("sub-01.html", "CITATION.html"):
        assert 'id="ref-he2025spec2vol"' in html and 'href="#ref-gramfort2013mne"' in html


def test_the_probe_sees_broken_images_and_errors(needs_chromium, tmp_path):
    """The negative control: a missing figure and a script error are reported."""
    page = tmp_path / "bad.html"
    page.write_text('<!DOCTYPE html><html><head><title>x</title></head><body><p>text</p>'
                    '<img alt="gone" src="missing.png"><script>notAFunction();</script>'
                    '<script>console.error("boom")</script></body></html>')
    seen = render(page)
    assert [img["alt"] for img in seen.broken] == ["gone"]
    assert any("failed to load" in e and "missing.png" in e for e in seen.errors)
    assert any("notAFunction" in e for e in seen.errors) and any("boom" in e for e in seen.errors)
    with pytest.raises(AssertionError, match="broken images|notAFunction"):
        assert_renders(page, tmp_path / "bad.png", min_images=0)
