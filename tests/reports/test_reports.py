"""Tests of the participant and group HTML reports, their figures and the methods text."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest

from spec2vol_bids.config import PreprocConfig
from spec2vol_bids.errors import DataError, NoInputError, UsageError
from spec2vol_bids.preproc.eeg import spectrogram_from_array
from spec2vol_bids.preproc.fmri import bold_target
from spec2vol_bids.reports import figures
from spec2vol_bids.reports.group import group_report, load_metrics
from spec2vol_bids.reports.methods import methods_text
from spec2vol_bids.reports.participant import RunReport, participant_report

PNG_RE = re.compile(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


def decode_pngs(html: str) -> list[np.ndarray]:
    """Every embedded image as an RGBA array (fails if a payload is not a valid PNG)."""
    from PIL import Image

    out = []
    for payload in PNG_RE.findall(html):
        raw = base64.b64decode(payload, validate=True)
        assert raw.startswith(b"\x89PNG\r\n\x1a\n")
        img = Image.open(io.BytesIO(raw))
        img.load()
        out.append(np.asarray(img.convert("RGBA")))
    return out


def assert_not_blank(img: np.ndarray):
    rgb = img[..., :3].reshape(-1, 3)
    assert img.shape[0] > 100 and img.shape[1] > 200
    non_white = np.any(rgb < 245, axis=1).mean()
    assert non_white > 0.05, f"only {non_white:.1%} of pixels are not white"
    assert len(np.unique(rgb, axis=0)) > 50  # real content, not a flat colour


@pytest.fixture(scope="module")
def run_data():
    rng = np.random.default_rng(0)
    sfreq, tr, n_vol = 100.0, 2.0, 36
    onsets = 1.5 + tr * np.arange(n_vol) + rng.normal(0, 0.0005, n_vol)
    eeg = rng.standard_normal((4, int((onsets[-1] + tr) * sfreq) + 50))
    cfg = PreprocConfig.from_dict({"eeg": {"n_freqs": 60}, "bold": {"grid": 16, "n_slices": 8}})
    raw, freqs, valid = spectrogram_from_array(eeg, onsets, sfreq, cfg.eeg, tr=tr, scale=False)
    g = np.meshgrid(*[np.linspace(-1, 1, s) for s in (20, 20, 10)], indexing="ij")
    head = (g[0] / 0.8) ** 2 + (g[1] / 0.8) ** 2 + (g[2] / 0.9) ** 2 <= 1
    bold = 10 + 80 * head[..., None] * (1 + 0.05 * rng.standard_normal((1, 1, 1, n_vol))) \
        + rng.normal(0, 2, (20, 20, 10, n_vol))
    target = bold_target(bold, np.eye(4), cfg.bold)
    idx = np.arange(26, n_vol)
    pred = np.clip(target.data[..., idx] + rng.normal(0, 0.05, target.data[..., idx].shape), 0, 1)
    return dict(cfg=cfg, onsets=onsets, eeg_duration=eeg.shape[1] / sfreq, sfreq=sfreq, raw=raw, freqs=freqs,
                valid=valid, target=target, idx=idx, pred=pred, n_vol=n_vol, tr=tr)


def make_run(d, **over):
    kw = dict(name="sub-01_task-rest_run-1", repetition_time=d["tr"], n_volumes=d["n_vol"],
              volume_onsets=d["onsets"], onset_source="markers", marker_onsets=d["onsets"][:-1],
              eeg_duration=d["eeg_duration"], sfreq=d["sfreq"], channels=["Fp1", "Cz", "Pz", "ECG"],
              spectrogram=d["raw"], frequencies=d["freqs"], valid=d["valid"], n_pairs=4,
              target=d["target"].data, mask=d["target"].mask.astype(bool))
    kw.update(over)
    return RunReport(**kw)


@pytest.mark.slow
def test_participant_report_sections_and_images(tmp_path, run_data):
    d = run_data
    crash = tmp_path / "sub-01" / "log" / "crash-20260101-node.txt"
    crash.parent.mkdir(parents=True)
    crash.write_text("Traceback (most recent call last):\nValueError: boom in node\n")
    run = make_run(d, prediction=d["pred"], prediction_indices=d["idx"])
    fallback = make_run(d, name="task-rest_run-2", onset_source="tr-fallback", marker_onsets=None)
    path = participant_report(tmp_path, "sub-01", [run, fallback], config=d["cfg"], errors=[crash],
                              versions={"numpy": "9.9.9"}, model="spec2vol_demo.pt")
    assert path == tmp_path / "sub-01.html"
    html = path.read_text()
    for sec in ("summary", "alignment", "spectrogram", "target", "prediction", "methods", "errors"):
        assert f'<section id="{sec}">' in html
    imgs = decode_pngs(html)
    assert len(imgs) == 7  # 2 x (alignment, spectrogram, target) + 1 prediction
    for img in imgs:
        assert_not_blank(img)
    # summary: marker mismatch and fallback are reported; the crash file's text is embedded
    assert "35 volume markers were found for 36 BOLD volumes" in html
    assert "No volume markers" in html and "tr-fallback" in html
    assert "ValueError: boom in node" in html and "sub-01/log/crash-20260101-node.txt" in html
    assert "NumPy 9.9.9" in html and "spec2vol_demo.pt" in html
    assert 'n_freqs = 60' in html  # the settings TOML is shown
    # figures saved next to the report, byte-identical to the embedded ones
    fig_dir = tmp_path / "sub-01" / "figures"
    names = sorted(p.name for p in fig_dir.iterdir())
    assert names == sorted([
        "sub-01_task-rest_run-1_desc-alignment_eeg.png", "sub-01_task-rest_run-1_desc-spectrogram_eeg.png",
        "sub-01_task-rest_run-1_desc-target_bold.png", "sub-01_task-rest_run-1_desc-prediction_bold.png",
        "sub-01_task-rest_run-2_desc-alignment_eeg.png", "sub-01_task-rest_run-2_desc-spectrogram_eeg.png",
        "sub-01_task-rest_run-2_desc-target_bold.png"])
    embedded = {base64.b64decode(p) for p in PNG_RE.findall(html)}
    assert {p.read_bytes() for p in fig_dir.iterdir()} == embedded
    assert not [p for p in tmp_path.rglob("*.tmp*")]


def test_report_without_predictions_or_data(tmp_path, run_data):
    run = make_run(run_data, spectrogram=None, target=None)
    html = participant_report(tmp_path, "02", [run], save_figures=False).read_text()
    assert '<section id="prediction">' not in html
    assert html.count("Not available for this participant") == 2
    assert len(decode_pngs(html)) == 1 and not (tmp_path / "sub-02").exists()
    assert "No errors to report" in html
    empty = participant_report(tmp_path, "03", [], errors=["EEG shorter than BOLD"]).read_text()
    assert "EEG shorter than BOLD" in empty and "0 paired EEG-fMRI runs" in empty
    with pytest.raises(UsageError):
        participant_report(tmp_path, "sub-0_1", [])


def test_broken_figure_is_reported_not_fatal(tmp_path, run_data):
    run = make_run(run_data, spectrogram=np.zeros((3, 4)))  # wrong rank
    html = participant_report(tmp_path, "04", [run]).read_text()
    assert "spectrogram figure could not be drawn" in html
    assert '<section id="errors">' in html and "1 error" in html


@pytest.mark.slow
def test_prediction_figure_computes_metrics(run_data):
    d = run_data
    truth = d["target"].data[..., d["idx"]]
    fig = figures.prediction_figure(d["pred"], truth, volume_indices=d["idx"], mask=d["target"].mask > 0)
    titles = [ax.get_title() for ax in fig.axes]
    ssim_title = next(t for t in titles if t.startswith("SSIM per volume"))
    ssim = float(ssim_title.split("mean ")[1].rstrip(")"))
    perfect = figures.prediction_figure(truth, truth, volume_indices=d["idx"])
    perfect_title = next(ax.get_title() for ax in perfect.axes if ax.get_title().startswith("SSIM"))
    assert perfect_title.endswith("(mean 1.000)") and 0.2 < ssim < 0.99
    assert_not_blank(decode_pngs(f'src="data:image/png;base64,{base64.b64encode(figures.to_png(fig)).decode()}"')[0])
    figures.to_png(perfect)


@pytest.mark.slow
def test_svg_is_reproducible_and_saved_atomically(tmp_path, run_data):
    d = run_data
    a = figures.to_svg(figures.alignment_figure(d["onsets"], d["tr"]))
    b = figures.to_svg(figures.alignment_figure(d["onsets"], d["tr"]))
    assert a == b and a.lstrip().startswith(b"<?xml")
    out = figures.save_figure(figures.bold_figure(d["target"].data), tmp_path / "x" / "bold.svg")
    assert out.read_bytes().startswith(b"<?xml")
    with pytest.raises(UsageError):
        figures.save_figure(figures.bold_figure(d["target"].data), tmp_path / "x.pdf")


def test_methods_text_follows_the_settings():
    official = methods_text(PreprocConfig(), n_runs=3)
    assert "Each of the 3 paired EEG-fMRI runs" in official
    assert "rectangular (boxcar)" in official and "coefficients 1 to 249" in official
    assert "z-scored across electrodes" in official and "first 6 volumes" in official
    assert "20 consecutive windows immediately preceding" in official
    assert "discrete cosine transform" in official and "min-max scaled to [0, 1] using all its voxels" in official
    custom = methods_text(PreprocConfig.from_dict({
        "eeg": {"taper": "hann", "overlap": 0.5, "log_power": True, "frequency_axis": "hz", "fmin": 1.0,
                "fmax": 40.0, "exclude_types": ["ECG"], "scaling": "zscore-channel"},
        "pairing": {"window_span_s": 20.0, "lag_s": 6.0},
        "bold": {"scaling": "zscore", "n_slices": 32}}),
        onset_sources={"markers": 2, "tr-fallback": 1})
    for phrase in ("Hann taper", "overlapped by 50%", "decibels", "from 1 to 40 Hz", "type ECG were excluded",
                   "z-scored over all its windows", "round(20 s / TR)", "round(6 s / TR)", "32 slices",
                   "z-scored within a brain mask", "(2 runs)", "(1 run)", "multiples of the repetition time"):
        assert phrase in custom, phrase
    assert "boxcar" not in custom


def metrics_rows():
    rng = np.random.default_rng(1)
    rows = []
    for s in ("01", "02", "03"):
        for r in (1, 2):
            rows.append({"participant_id": f"sub-{s}", "task": "rest", "run": r,
                         "ssim": 0.5 + 0.1 * int(s) + 0.01 * rng.standard_normal(),
                         "psnr": 20 + rng.standard_normal(), "dynamic_correlation": 0.1 * rng.random()})
    return rows


@pytest.mark.slow
def test_group_report(tmp_path):
    import pandas as pd

    rows = metrics_rows()
    tsv = tmp_path / "group_metrics.tsv"
    pd.DataFrame(rows).to_csv(tsv, sep="\t", index=False)
    path = group_report(tmp_path, tsv)
    html = path.read_text()
    assert path == tmp_path / "group.html"
    for sec in ("summary", "figures", "table"):
        assert f'<section id="{sec}">' in html
    imgs = decode_pngs(html)
    assert len(imgs) == 1
    assert_not_blank(imgs[0])
    assert (tmp_path / "figures" / "group_desc-metrics.png").read_bytes() == \
        base64.b64decode(PNG_RE.findall(html)[0])
    df = pd.DataFrame(rows)
    sub2 = df[df.participant_id == "sub-02"]["ssim"]
    assert f"{sub2.mean():.4f} ± {sub2.std():.4f}" in html
    assert "6 runs from 3 participants; metrics: ssim, psnr, dynamic_correlation" in html
    only = group_report(tmp_path / "b", rows, metrics=["psnr"], save_figures=False).read_text()
    assert "metrics: psnr." in only and not (tmp_path / "b" / "figures").exists()


def test_group_report_errors(tmp_path):
    with pytest.raises(NoInputError):
        load_metrics(tmp_path / "missing.tsv")
    with pytest.raises(DataError, match="subject column"):
        load_metrics([{"ssim": 0.5}])
    with pytest.raises(DataError, match="no rows"):
        load_metrics([])
    with pytest.raises(DataError, match="ssimm"):
        group_report(tmp_path, metrics_rows(), metrics=["ssimm"])
    with pytest.raises(DataError, match="numeric"):
        group_report(tmp_path, [{"subject": "01", "note": "x"}])


def test_spectrogram_figure_flags_outlier_channel(run_data):
    d = run_data
    spec = d["raw"].copy()
    spec[:, 3] *= 1000  # an "ECG" channel with huge power
    fig = figures.spectrogram_figure(spec, d["freqs"], valid=d["valid"], channels=["Fp1", "Cz", "Pz", "ECG"])
    bars = fig.axes[-1].patches
    colours = [tuple(np.round(b.get_facecolor()[:3], 2)) for b in bars]
    assert len(bars) == 4 and colours[3] != colours[0] and len(set(colours[:3])) == 1
    figures.to_png(fig)
    with pytest.raises(UsageError):
        figures.spectrogram_figure(np.zeros((2, 3)), d["freqs"])


@pytest.mark.slow
def test_spectrogram_figure_on_electrode_zscored_input(run_data):
    from spec2vol_bids.preproc.eeg import scale_spectrogram

    d = run_data
    z = scale_spectrogram(d["raw"], "zscore-electrodes", valid=d["valid"])  # channel mean is 0 in every cell
    raw_fig = figures.spectrogram_figure(d["raw"], d["freqs"], valid=d["valid"])
    z_fig = figures.spectrogram_figure(z, d["freqs"], valid=d["valid"])
    assert raw_fig.axes[0].get_title() == "time x frequency, mean over channels"
    assert z_fig.axes[0].get_title().startswith("channel x frequency")
    img = z_fig.axes[0].images[0].get_array()
    assert img.shape == (4, 60) and np.ptp(img) > 0.1
    figures.to_png(raw_fig)
    figures.to_png(z_fig)


def test_alignment_figure_marks_filled_onsets():
    onsets = np.arange(30) * 2.0 + 1.5
    fig = figures.alignment_figure(onsets, 2.0, marker_onsets=np.delete(onsets, 12), filled=[12])
    top, bottom = fig.axes
    labels = top.get_legend_handles_labels()[1]
    assert "filled onsets, missing trigger (1)" in labels
    assert bottom.get_legend_handles_labels()[1] == ["filled: volume 12"]
    plain = figures.alignment_figure(onsets, 2.0)
    assert not any("filled" in t for t in plain.axes[0].get_legend_handles_labels()[1])


def _artefact_qc(corrected: bool) -> dict:
    """An ``ArtefactQC`` sidecar field as merge_qc writes it (3 EEG channels, slice frequency 10 Hz)."""
    f = np.arange(0.5, 120, 0.5)
    lines = np.isclose(f % 10, 0)
    before = np.where(lines, 45.0, 5.0 - 10 * np.log10(f))
    grad = {"Triggers": "slice", "ArtefactFrequency": 10.0, "Harmonics": [10.0 * k for k in range(1, 12) if k != 5],
            "HarmonicsMax": 119.0, "PowerBefore": [52.0, 50.5, 54.0], "PeakRatioBefore": [31.0, 30.0, 33.0],
            "MeanSpectrum": {"Frequencies": f.tolist(), "Before": before.tolist()}}
    card = {"ECGChannel": "ECG", "Channels": ["Fz", "Cz", "Pz"], "HeartRate": 64.0, "NumberOfBeats": 80,
            "PowerBefore": [29.0, 27.5, 31.0], "RatioBefore": [25.0, 24.0, 27.0]}
    if corrected:
        grad.update(PowerAfter=[12.0, 11.0, 14.0], PeakRatioAfter=[2.0, 1.5, 3.0], Reduction=[40.0, 39.5, 40.0])
        grad["MeanSpectrum"]["After"] = (5.0 - 10 * np.log10(f)).tolist()
        card.update(PowerAfter=[-5.0, -6.0, -3.0], RatioAfter=[-8.0, -9.0, -7.0], Reduction=[34.0, 33.5, 34.0])
    return {"Channels": ["Fz", "Cz", "Pz"], "Gradient": grad, "Cardiac": card,
            "ArtefactDetected": {"Gradient": not corrected, "Cardiac": None if not corrected else False}}


@pytest.mark.parametrize("corrected", [False, True])
def test_artefact_section_figure_and_loud_warning(tmp_path, run_data, corrected):
    warning = "The EEG holds MR gradient artefact ... and --eeg-correction is none"
    run = make_run(run_data, artefact_qc=_artefact_qc(corrected),
                   artefact_correction={"Method": "gradient+bcg" if corrected else "none"},
                   artefact_warnings=[] if corrected else [warning],
                   eeg_source={"Dataset": "raw", "File": "bids:raw:sub-01/eeg/sub-01_task-rest_run-1_eeg.vhdr"})
    html = participant_report(tmp_path, "01", [run], config=run_data["cfg"]).read_text()
    assert '<section id="artefacts">' in html
    assert html.count('class="alert"') == (0 if corrected else 2)  # at the top of the report and in the section
    if not corrected:
        summary = html.split('<section id="summary">')[1].split("</section>")[0]
        assert summary.index('class="alert"') < summary.index("Participant <b>sub-01</b>")  # first thing shown
        assert '<span class="nowrap">--eeg-correction</span> is none' in summary  # the option on one line
    else:
        assert "finds no gradient or pulse artefact" in html and "heart rate 64 per minute" in html
    assert "bids:raw:sub-01/eeg/sub-01_task-rest_run-1_eeg.vhdr" in html
    art = tmp_path / "sub-01" / "figures" / "sub-01_task-rest_run-1_desc-artefacts_eeg.png"
    assert art.is_file()
    from PIL import Image

    assert_not_blank(np.asarray(Image.open(art).convert("RGBA")))


def test_artefact_figure_without_ecg():
    qc = _artefact_qc(True)
    del qc["Cardiac"]
    fig = figures.artefact_figure(qc)
    assert len(fig.axes) == 2  # the spectrum and the per-channel harmonic power
    figures.to_png(fig)


def test_methods_text_describes_the_artefact_correction():
    assert "artefact" not in methods_text(PreprocConfig())
    text = methods_text(PreprocConfig.from_dict({"correction": {"method": "gradient+bcg", "obs_components": 3}}))
    for phrase in ("average artefact subtraction (Allen et al., 2000)", "slice triggers (\u201cSlice\u201d markers)",
                   "its 30 nearest epochs", "sub-sample alignment", "first 3 principal components",
                   "low-pass filtered at 250 Hz", "R peaks were detected on the ECG channel",
                   "mean of its 30 nearest heartbeats"):
        assert phrase in text, phrase
    # with citation keys: the methods' papers are cited from the reference list, with their BibTeX entries
    from spec2vol_bids.reports.methods import REFERENCES, bibtex, cited

    cfg = PreprocConfig.from_dict({"correction": {"method": "gradient+bcg", "obs_components": 3}})
    keys = cited(methods_text(cfg, cite=True))
    assert {"allen2000gradient", "niazy2005obs", "allen1998pulse"} <= set(keys)
    assert not {"allen2000gradient", "niazy2005obs", "allen1998pulse"} & set(cited(methods_text(PreprocConfig(),
                                                                                                 cite=True)))
    for key in ("allen2000gradient", "niazy2005obs", "allen1998pulse"):
        assert bibtex([key]).startswith(f"@article{{{key},") and "NeuroImage" in REFERENCES[key][0]


def test_methods_text_describes_the_model_that_made_the_predictions():
    from spec2vol_bids.reports.methods import methods_text

    published = methods_text(model="spec2vol")
    lowrank = methods_text(model="spec2vol-lowrank")
    ridge = methods_text(model="ridge")
    assert "trained model spec2vol (Spec2VolCAMU-Net" in published and "read-out" not in published
    assert "low-rank linear read-out to every voxel in place of its VM-UNet decoder" in lowrank
    assert "EEG encoder of Spec2VolCAMU-Net" in lowrank
    assert "trained model ridge." in ridge and "Spec2VolCAMU-Net [" not in ridge.split("trained model ridge")[1]
