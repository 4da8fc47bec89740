"""The artefact steps on simulated EEG recorded inside the scanner, against the oracle: the simulator's clean EEG.

Each simulated run holds the clean EEG plus the MR gradient artefact (and the pulse artefact); the clean EEG is
kept under derivatives/simulation. After correction, the spectrogram must agree with the clean EEG's spectrogram
and the artefact left at the slice harmonics must have fallen by at least 30 dB; without correction the QC must
flag the artefact.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from spec2vol_bids.bids.eeg import EEGRecording
from spec2vol_bids.config import PreprocConfig
from spec2vol_bids.errors import DataError
from spec2vol_bids.io.brainvision import BrainVisionWriter
from spec2vol_bids.io.spectrogram import load_spectrogram
from spec2vol_bids.pipeline import artefacts as PA
from spec2vol_bids.pipeline.steps import compute_spectrogram, inspect_run
from spec2vol_bids.preproc.artefacts import FIRFilter, WelchPSD, harmonic_power, lowpass_filter
from spec2vol_bids.simulate import get_preset, simulate_dataset
from spec2vol_bids.simulate.truth import without_cardiac_field

pytestmark = pytest.mark.slow  # simulated datasets: the full suite only

N_VOL, TR, FS = 40, 2.0, 1000.0
#: 8 EEG channels (+ ECG with bcg), 20 slices per TR: slice triggers every 100 ms, harmonics of 10 Hz
PRESET = get_preset("tiny").replace(n_subjects=1, n_volumes=N_VOL, n_eeg=8, grid=(64, 64, 20))
STEM = "sub-01_task-rest"
RAW = f"sub-01/eeg/{STEM}_eeg.vhdr"
CLEAN = f"derivatives/simulation/sub-01/eeg/{STEM}_desc-clean_eeg.vhdr"
PARAMS = f"derivatives/simulation/sub-01/func/{STEM}_desc-simulation_params.json"
#: the figures of the last run, printed at the end of the module (pytest -s) for the record
FIGURES: dict[str, float] = {}


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    base = tmp_path_factory.mktemp("inside")
    kw = {"preset": PRESET, "sfreq": FS, "seed": 0, "progress": False}
    return {"gradient": simulate_dataset(base / "gradient", artefacts="gradient", **kw),
            "both": simulate_dataset(base / "both", artefacts="gradient,bcg", **kw)}


def _files(root):
    eeg = root / RAW
    return dict(eeg=eeg, channels=eeg.with_name(f"{STEM}_channels.tsv"), events=eeg.with_name(f"{STEM}_events.tsv"),
                clean=root / CLEAN)


def _spectrogram(eeg, out, files, data_file=None):
    """The unscaled |FFT| spectrogram of the EEG channels below 40 Hz: [valid windows, EEG channels, freqs]."""
    cfg = PreprocConfig().replace(eeg={"scaling": "none"})
    h5, _ = compute_spectrogram(eeg, n_volumes=N_VOL, repetition_time=TR, out_file=out / f"{STEM}_desc-stft_spectrogram.h5",
                                config=cfg, channels_tsv=files["channels"], events_tsv=files["events"],
                                data_file=data_file)
    spec = load_spectrogram(h5)
    eeg_rows = [i for i, t in enumerate(spec.channel_types) if t == "EEG"]
    return spec.spectrogram[spec.valid][:, eeg_rows][:, :, spec.frequencies < 40.0]


def _corr(a, b) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def _harmonics_db(data, f0, first):
    """Power (dB re 1 uV^2) at the harmonics of ``f0`` up to 124 Hz of every row of ``data`` from sample ``first``."""
    psd = WelchPSD(data.shape[0], FS, int(round(8 * FS / f0)))
    psd.push(data[:, first:])
    f, p = psd.result()
    return harmonic_power(f, p, f0, fmax=124.0)["power_db"]


def _uv(path):
    return EEGRecording(path).raw.get_data() * 1e6


@pytest.fixture(scope="module")
def gradient_run(datasets, tmp_path_factory):
    files = _files(datasets["gradient"])
    work = tmp_path_factory.mktemp("gradient_work")
    cfg = PreprocConfig().replace(correction={"method": "gradient"})
    out = PA.correct_gradient(files["eeg"], out_file=work / f"{STEM}_desc-gradient_eeg.vhdr", qc_file=work / "qc.json",
                              n_volumes=N_VOL, repetition_time=TR, config=cfg, channels_tsv=files["channels"],
                              events_tsv=files["events"])
    return files, work, out


def test_gradient_correction_against_the_clean_eeg(gradient_run):
    files, work, out = gradient_run
    qc = json.loads(out["qc_file"].read_text())
    grad = qc["Gradient"]
    assert grad["Triggers"] == "slice" and grad["TriggerMarker"] == "Response/Slice"
    assert grad["NumberOfEpochs"] == N_VOL * 20 and grad["ArtefactFrequency"] == pytest.approx(10.0, abs=1e-3)
    assert "ecg_file" not in out and "Cardiac" not in qc  # this run has no ECG
    # the spectrogram of the corrected EEG agrees with the clean EEG's; the raw one does not
    clean = _spectrogram(files["clean"], work / "s_clean", files)
    corrected = _spectrogram(files["eeg"], work / "s_corr", files, data_file=out["out_file"])
    raw = _spectrogram(files["eeg"], work / "s_raw", files)
    FIGURES["gradient: spectrogram correlation, corrected"] = _corr(corrected, clean)
    FIGURES["gradient: spectrogram correlation, uncorrected"] = _corr(raw, clean)
    assert FIGURES["gradient: spectrogram correlation, corrected"] >= 0.95
    assert FIGURES["gradient: spectrogram correlation, uncorrected"] < 0.5
    # the artefact left at the slice harmonics (corrected - clean) is at least 30 dB below the artefact (raw - clean)
    x, c, y = _uv(files["eeg"]), _uv(files["clean"]), _uv(out["out_file"])
    params = json.loads((files["eeg"].parents[2] / "derivatives/simulation/sub-01/func"
                         / f"{STEM}_desc-simulation_params.json").read_text())
    first = params["FirstVolumeSample"]
    drop = _harmonics_db(x - c, 10.0, first) - _harmonics_db(y - c, 10.0, first)
    FIGURES["gradient: smallest fall of the artefact at the slice harmonics (dB)"] = float(drop.min())
    assert np.all(drop >= 30.0), drop
    # the QC (no oracle: total power at the harmonics) sees the same: far above the background before, near it after
    assert min(grad["PeakRatioBefore"]) > 25.0 and max(grad["PeakRatioAfter"]) < 10.0
    assert min(grad["Reduction"]) > 25.0
    merged = PA.merge_qc([out["qc_file"]], PreprocConfig().replace(correction={"method": "gradient"}))
    assert merged["ArtefactQC"]["ArtefactDetected"]["Gradient"] is False and merged["ArtefactWarnings"] == []


def test_the_corrected_file_keeps_channels_markers_and_length(gradient_run):
    files, _, out = gradient_run
    src, dst = EEGRecording(files["eeg"]), EEGRecording(out["out_file"])
    assert (dst.ch_names, dst.sfreq, dst.n_samples) == (src.ch_names, src.sfreq, src.n_samples)
    assert [d for _, d in dst.annotations()] == [d for _, d in src.annotations()]
    np.testing.assert_allclose([o for o, _ in dst.annotations()], [o for o, _ in src.annotations()], atol=1e-3)
    # before the first trigger only the 250 Hz low-pass acted: the samples are the low-passed input's
    x, y = _uv(files["eeg"]), _uv(out["out_file"])
    taps = lowpass_filter(FS, 250.0)
    lowpassed = FIRFilter(taps, x.shape[0], x.shape[1]).push(x)
    first = int(round(src.annotations()[0][0] * FS)) - taps.size // 2  # the filter reaches half its length ahead
    np.testing.assert_allclose(y[:, :first], lowpassed[:, :first], atol=1e-3)  # float32 microvolts
    assert np.abs(y[:, first:] - lowpassed[:, first:]).max() > 100.0  # after it: the artefact is gone


def test_gradient_and_pulse_correction_against_the_clean_eeg(datasets, tmp_path):
    files = _files(datasets["both"])
    cfg = PreprocConfig().replace(correction={"method": "gradient+bcg"})
    g = PA.correct_gradient(files["eeg"], out_file=tmp_path / "g" / f"{STEM}_eeg.vhdr", qc_file=tmp_path / "g.json",
                            ecg_file=tmp_path / "ecg.npy", n_volumes=N_VOL, repetition_time=TR, config=cfg,
                            channels_tsv=files["channels"], events_tsv=files["events"], cardiac_qc=False)
    b = PA.correct_bcg(g["out_file"], out_file=tmp_path / "b" / f"{STEM}_eeg.vhdr", qc_file=tmp_path / "b.json",
                       ecg_file=g["ecg_file"], config=cfg, channels_tsv=files["channels"])
    clean = _spectrogram(files["clean"], tmp_path / "s_clean", files)
    both = _spectrogram(files["eeg"], tmp_path / "s_both", files, data_file=b["out_file"])
    gradient_only = _spectrogram(files["eeg"], tmp_path / "s_grad", files, data_file=g["out_file"])
    brain = _spectrogram(files["eeg"], tmp_path / "s_brain", files,
                         data_file=without_cardiac_field(datasets["both"] / CLEAN, datasets["both"] / PARAMS,
                                                         tmp_path / "brain"))
    FIGURES["gradient+bcg: spectrogram correlation, corrected"] = _corr(both, clean)
    FIGURES["gradient+bcg: spectrogram correlation, corrected vs clean without the cardiac field"] = _corr(both, brain)
    FIGURES["gradient+bcg: spectrogram correlation, gradient corrected only"] = _corr(gradient_only, clean)
    # The correction removes everything locked to the R peaks: the pulse artefact and the cardiac field that the
    # simulator's clean EEG keeps (the ECG the electrodes pick up), so it is measured against the clean EEG
    # without it (the 0.95). Measured on this run (seed 0): 0.960 against it, 0.947 against the clean EEG
    # with the field; seeds 0-3 give 0.955-0.960 and 0.941-0.953 (experiments/bcg_residual.py, 8 channels; the
    # previous release 0.943-0.949 and 0.928-0.941). What is left is mostly the beat-to-beat variation of the
    # simulated pulse artefact (5 % amplitude, 2 ms latency per component), which no template follows: without it
    # the same correction reaches 0.977-0.979.
    assert FIGURES["gradient+bcg: spectrogram correlation, corrected vs clean without the cardiac field"] >= 0.95
    assert FIGURES["gradient+bcg: spectrogram correlation, corrected"] >= 0.94
    assert FIGURES["gradient+bcg: spectrogram correlation, gradient corrected only"] < 0.7
    card = json.loads(b["qc_file"].read_text())["Cardiac"]
    params = json.loads((datasets["both"] / "derivatives/simulation/sub-01/func"
                         / f"{STEM}_desc-simulation_params.json").read_text())
    true_peaks = np.asarray(params["Artefacts"]["BCG"]["RPeaks"]) * FS
    assert card["ECGChannel"] == "ECG" and abs(card["NumberOfBeats"] - true_peaks.size) <= 3
    assert card["HeartRate"] == pytest.approx(60 * (true_peaks.size - 1) / (np.ptp(true_peaks) / FS), rel=0.05)
    assert min(card["RatioBefore"]) > 15.0 and max(card["RatioAfter"]) < 6.0 and min(card["Reduction"]) > 15.0
    # both steps in one go (what the workflow runs): the gradient step's output and QC are the same; the R peaks
    # come from the ECG corrected on its own (its sub-sample delays found on that channel alone), here one of 90
    # one sample apart, which moves that beat's epoch and the templates of its neighbours: the same accuracy
    one = PA.correct_gradient_bcg(files["eeg"], out_file=tmp_path / "one" / f"{STEM}_eeg.vhdr",
                                  qc_file=tmp_path / "one_g.json", bcg_qc_file=tmp_path / "one_b.json",
                                  n_volumes=N_VOL, repetition_time=TR, config=cfg, channels_tsv=files["channels"],
                                  events_tsv=files["events"])
    assert json.loads(one["qc_file"].read_text()) == json.loads(g["qc_file"].read_text())
    card_one = json.loads(one["bcg_qc_file"].read_text())["Cardiac"]
    assert card_one["NumberOfBeats"] == card["NumberOfBeats"] and card_one["HeartRate"] == card["HeartRate"]
    once = _spectrogram(files["eeg"], tmp_path / "s_once", files, data_file=one["out_file"])
    FIGURES["gradient+bcg in one go: spectrogram correlation, corrected vs clean without the cardiac field"] = \
        _corr(once, brain)
    assert _corr(once, brain) >= 0.95 and abs(_corr(once, brain) - _corr(both, brain)) < 0.002
    merged = PA.merge_qc([g["qc_file"], b["qc_file"]], cfg)
    assert merged["ArtefactQC"]["ArtefactDetected"] == {"Gradient": False, "Cardiac": False}
    assert merged["ArtefactCorrection"]["Method"] == "gradient+bcg"
    assert set(merged["ArtefactCorrection"]) == {"Method", "Gradient", "BCG"}


def test_the_qc_flags_artefacts_that_are_not_corrected(datasets, gradient_run, tmp_path):
    files = _files(datasets["both"])
    cfg = PreprocConfig()  # --eeg-correction none
    qc = PA.artefact_qc(files["eeg"], qc_file=tmp_path / "raw.json", n_volumes=N_VOL, repetition_time=TR, config=cfg,
                        channels_tsv=files["channels"], events_tsv=files["events"])
    merged = PA.merge_qc([qc], cfg)
    assert merged["ArtefactQC"]["ArtefactDetected"] == {"Gradient": True, "Cardiac": None}
    assert "hides the heartbeat" in merged["ArtefactQC"]["Cardiac"]["Skipped"]
    assert len(merged["ArtefactWarnings"]) == 1 and "--eeg-correction is none" in merged["ArtefactWarnings"][0]
    # the clean EEG: nothing to flag (its faint cardiac trace of a few microvolts is no pulse artefact)
    qc = PA.artefact_qc(files["clean"], qc_file=tmp_path / "clean.json", n_volumes=N_VOL, repetition_time=TR,
                        config=cfg, channels_tsv=files["channels"], events_tsv=files["events"])
    merged = PA.merge_qc([qc], cfg)
    assert merged["ArtefactQC"]["ArtefactDetected"] == {"Gradient": False, "Cardiac": False}
    assert merged["ArtefactWarnings"] == []
    # the gradient artefact corrected but not the pulse artefact: the cardiac check flags it
    g = PA.correct_gradient(files["eeg"], out_file=tmp_path / "g" / f"{STEM}_eeg.vhdr", qc_file=tmp_path / "g.json",
                            n_volumes=N_VOL, repetition_time=TR,
                            config=cfg.replace(correction={"method": "gradient"}),
                            channels_tsv=files["channels"], events_tsv=files["events"])
    merged = PA.merge_qc([g["qc_file"]], cfg.replace(correction={"method": "gradient"}))
    assert merged["ArtefactQC"]["ArtefactDetected"] == {"Gradient": False, "Cardiac": True}
    assert "pulse (BCG) artefact" in merged["ArtefactWarnings"][0] and "gradient+bcg" in merged["ArtefactWarnings"][0]


def test_runs_that_cannot_be_corrected_are_refused_before_processing(datasets, tmp_path):
    files = _files(datasets["gradient"])  # no ECG channel
    bold = datasets["gradient"] / "sub-01" / "func" / f"{STEM}_bold.nii.gz"
    both = PreprocConfig().replace(correction={"method": "gradient+bcg"})
    with pytest.raises(DataError, match="no ECG channel"):
        inspect_run(files["eeg"], bold, repetition_time=TR, config=both, channels_tsv=files["channels"],
                    events_tsv=files["events"])
    with pytest.raises(DataError, match="ECG channel 'EKG'"):
        inspect_run(files["eeg"], bold, repetition_time=TR, config=both.replace(correction={"ecg_channel": "EKG"}),
                    channels_tsv=files["channels"], events_tsv=files["events"])
    slices = PreprocConfig().replace(correction={"method": "gradient", "triggers": "slice", "slice_marker": "S99"})
    with pytest.raises(DataError, match="no slice triggers named 'S99'"):
        inspect_run(files["eeg"], bold, repetition_time=TR, config=slices, channels_tsv=files["channels"],
                    events_tsv=files["events"])
    # a recording without any marker: the artefact cannot be located
    vhdr = tmp_path / "bare" / "sub-01_task-rest_eeg.vhdr"
    vhdr.parent.mkdir()
    with BrainVisionWriter(vhdr, ["Cz", "Pz"], FS, [], meas_date="20000101000000000000") as w:
        w.write(np.zeros((2, int(N_VOL * TR * FS) + 10), np.float32))
    with pytest.raises(DataError, match="no volume markers"):
        inspect_run(vhdr, bold, repetition_time=TR, config=PreprocConfig().replace(correction={"method": "gradient"}))
    # a corrected file that does not belong to the recording
    with pytest.raises(DataError, match="does not match"):
        compute_spectrogram(files["eeg"], n_volumes=N_VOL, repetition_time=TR, out_file=tmp_path / "s" / "x.h5",
                            channels_tsv=files["channels"], events_tsv=files["events"], data_file=vhdr)


def test_a_failure_during_the_correction_leaves_no_corrected_file(datasets, tmp_path, monkeypatch):
    """Errors of the reading thread (bad samples) and of the worker thread (writing) end the step with that error,
    and nothing is left where the corrected file would be."""
    from spec2vol_bids.io.brainvision import markers_from_annotations

    files = _files(datasets["gradient"])
    rec = EEGRecording(files["eeg"], files["channels"])
    data = _uv(files["eeg"]).astype(np.float32)
    data[2, int(51.25 * FS)] = np.nan
    bad = tmp_path / "bad" / f"{STEM}_eeg.vhdr"
    bad.parent.mkdir()
    with BrainVisionWriter(bad, rec.ch_names, FS, markers_from_annotations(rec.annotations(), FS),
                           meas_date="20000101000000000000") as w:
        w.write(data)
    cfg = PreprocConfig().replace(correction={"method": "gradient"})
    kw = dict(n_volumes=N_VOL, repetition_time=TR, config=cfg, channels_tsv=files["channels"])
    out = tmp_path / "out"
    with pytest.raises(DataError, match=rf"EEG channel {rec.ch_names[2]} has NaN.*51.250 s"):
        PA.correct_gradient(bad, out_file=out / "x_eeg.vhdr", qc_file=out / "qc.json", **kw)
    assert not out.exists() or not any(out.iterdir())
    calls = []

    def failing_write(self, block):
        calls.append(block.shape[1])
        if len(calls) == 2:  # after the first block was written
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(BrainVisionWriter, "write", failing_write)
    with pytest.raises(OSError, match="No space left"):
        PA.correct_gradient(files["eeg"], out_file=out / "x_eeg.vhdr", qc_file=out / "qc.json", **kw)
    assert len(calls) >= 2 and (not out.exists() or not any(out.iterdir()))
    # the same with both corrections in one go (the write fails in its second pass)
    both = _files(datasets["both"])
    calls.clear()
    with pytest.raises(OSError, match="No space left"):
        PA.correct_gradient_bcg(both["eeg"], out_file=out / "x_eeg.vhdr", qc_file=out / "g.json",
                                bcg_qc_file=out / "b.json", **{**kw, "channels_tsv": both["channels"]})
    assert len(calls) >= 2 and (not out.exists() or not any(out.iterdir()))
    monkeypatch.undo()
    # NaN in the one-node step: an electrode's (found by the worker reading ahead), the ECG's (found by the R-peak
    # pass, which reads that channel alone)
    brec = EEGRecording(both["eeg"], both["channels"])
    ecg = brec.ch_names.index("ECG")
    for ch in (2, ecg):
        data = _uv(both["eeg"]).astype(np.float32)
        data[ch, int(51.25 * FS)] = np.nan
        nan_file = tmp_path / f"nan{ch}" / f"{STEM}_eeg.vhdr"
        nan_file.parent.mkdir()
        with BrainVisionWriter(nan_file, brec.ch_names, FS, markers_from_annotations(brec.annotations(), FS),
                               meas_date="20000101000000000000") as w:
            w.write(data)
        with pytest.raises(DataError, match=rf"EEG channel {brec.ch_names[ch]} has NaN.*51.250 s"):
            PA.correct_gradient_bcg(nan_file, out_file=out / "x_eeg.vhdr", qc_file=out / "g.json",
                                    bcg_qc_file=out / "b.json", **{**kw, "channels_tsv": both["channels"]})
        assert not out.exists() or not any(out.iterdir())
    # the worker reading ahead finds the electrode's NaN only after the correction is done (here it starts only
    # then): the corrected file is not put in place
    monkeypatch.setattr(PA._Ahead, "__enter__", lambda self: self)
    monkeypatch.setattr(PA._Ahead, "check", lambda self: None)

    def late(self):
        self.thread.start()
        self.thread.join()
        if self.error is not None:
            raise self.error

    monkeypatch.setattr(PA._Ahead, "finish", late)
    with pytest.raises(DataError, match=rf"EEG channel {brec.ch_names[2]} has NaN.*51.250 s"):
        PA.correct_gradient_bcg(tmp_path / "nan2" / f"{STEM}_eeg.vhdr", out_file=out / "x_eeg.vhdr",
                                qc_file=out / "g.json", bcg_qc_file=out / "b.json",
                                **{**kw, "channels_tsv": both["channels"]})
    assert not out.exists() or not any(out.iterdir())


def test_one_node_reads_with_mne_what_it_cannot_read_directly(datasets, tmp_path, monkeypatch):
    """A recording read with MNE (any format but multiplexed binary BrainVision) is read once for the R peaks, its
    QC measured on the way, instead of the ECG being read alone while a worker reads ahead: the same output."""
    files = _files(datasets["both"])
    cfg = PreprocConfig().replace(correction={"method": "gradient+bcg"})
    kw = dict(n_volumes=N_VOL, repetition_time=TR, config=cfg, channels_tsv=files["channels"],
              events_tsv=files["events"])
    started = []
    enter = PA._Ahead.__enter__
    monkeypatch.setattr(PA._Ahead, "__enter__", lambda self: started.append(self) or enter(self))
    direct = PA.correct_gradient_bcg(files["eeg"], out_file=tmp_path / "d" / f"{STEM}_eeg.vhdr",
                                     qc_file=tmp_path / "d_g.json", bcg_qc_file=tmp_path / "d_b.json", **kw)
    assert len(started) == 1  # the simulator's file is read directly, the ECG alone, a worker reading ahead
    monkeypatch.setattr(PA, "_direct_reader", lambda rec, picks=None: None)
    mne = PA.correct_gradient_bcg(files["eeg"], out_file=tmp_path / "m" / f"{STEM}_eeg.vhdr",
                                  qc_file=tmp_path / "m_g.json", bcg_qc_file=tmp_path / "m_b.json", **kw)
    assert len(started) == 1  # no worker reading ahead
    np.testing.assert_allclose(_uv(mne["out_file"]), _uv(direct["out_file"]), atol=1e-3)
    g_direct, g_mne = (json.loads(r["qc_file"].read_text())["Gradient"] for r in (direct, mne))
    np.testing.assert_allclose(g_mne["Reduction"], g_direct["Reduction"], atol=0.02)
    np.testing.assert_allclose(g_mne["PowerBefore"], g_direct["PowerBefore"], atol=0.02)
    b_direct, b_mne = (json.loads(r["bcg_qc_file"].read_text())["Cardiac"] for r in (direct, mne))
    assert b_mne["NumberOfBeats"] == b_direct["NumberOfBeats"]
    np.testing.assert_allclose(b_mne["Reduction"], b_direct["Reduction"], atol=0.02)


def test_preprocess_run_chains_the_steps_like_the_workflow(datasets, tmp_path):
    from spec2vol_bids.bids.runs import collect_pairs
    from spec2vol_bids.pipeline.steps import preprocess_run

    pair = collect_pairs(datasets["both"])[0]
    cfg = PreprocConfig().replace(correction={"method": "gradient+bcg"})
    files = preprocess_run(pair, tmp_path / "out", config=cfg)
    side = json.loads(files["spectrogram"].with_suffix(".json").read_text())
    assert side["ArtefactCorrection"]["Method"] == "gradient+bcg" and side["ArtefactWarnings"] == []
    assert set(side["ArtefactQC"]["ArtefactDetected"].values()) == {False}
    assert not list((tmp_path / "out").glob(".spec2vol-artefacts-*"))  # the corrected copies are removed
    # the same run, step by step (as the workflow's nodes): the same spectrogram
    work = tmp_path / "work"
    data_file, qc_files = PA.run_artefact_steps(pair.eeg_file, work, n_volumes=N_VOL, repetition_time=TR,
                                                config=cfg, channels_tsv=pair.channels_tsv, events_tsv=pair.events_tsv)
    h5, _ = compute_spectrogram(pair.eeg_file, n_volumes=N_VOL, repetition_time=TR, out_file=work / "s.h5",
                                config=cfg, channels_tsv=pair.channels_tsv, events_tsv=pair.events_tsv,
                                data_file=data_file, qc_files=qc_files)
    np.testing.assert_array_equal(load_spectrogram(h5).spectrogram, load_spectrogram(files["spectrogram"]).spectrogram)
    assert [q.name for q in qc_files] == ["qc_gradient.json", "qc_bcg.json"]


def test_zz_print_figures():
    """Not a check: the figures of this module, for the report (run with -s)."""
    for key, value in FIGURES.items():
        print(f"{key}: {value:.4f}")


def test_background_worker_keeps_the_order_and_raises_its_errors():
    """The corrected file and the QC are made in a worker thread: in the order submitted, its errors raised."""
    import threading

    from spec2vol_bids.pipeline.artefacts import _Background

    seen, threads = [], set()

    def work(i):
        threads.add(threading.get_ident())
        seen.append(i)

    with _Background(max_pending=2) as bg:
        for i in range(200):
            bg.submit(work, i)
    assert seen == list(range(200)) and threading.get_ident() not in threads
    with pytest.raises(ZeroDivisionError), _Background() as bg:  # raised at a later submit or at the end
        for i in range(10):
            bg.submit(lambda i=i: 1 / (i - 5))
    # the caller's own error wins (what is still queued is cancelled)
    with pytest.raises(KeyError), _Background(max_pending=100) as bg:
        for _ in range(50):
            bg.submit(seen.append, -1)
        raise KeyError("caller")
