"""nipype interfaces: the derivatives sink, the spectrogram interface run on its own, cache hashing."""

from __future__ import annotations

from pathlib import Path

from spec2vol_bids.interfaces import DerivativesDataSink, EEGSpectrogram, Predict


def test_sink_copies_sidecars_first_and_always_runs(tmp_path):
    src = tmp_path / "node" / "sub-01" / "func"
    src.mkdir(parents=True)
    data, side = src / "sub-01_task-x_desc-target_bold.nii.gz", src / "sub-01_task-x_desc-target_bold.json"
    data.write_bytes(b"nifti")
    side.write_text("{}")
    out = tmp_path / "out"
    sink = DerivativesDataSink(base_directory=str(out), in_files=[str(data), str(side)])
    res = sink.run(cwd=str(tmp_path))
    assert res.outputs.out_files == [str(out / "sub-01/func" / side.name), str(out / "sub-01/func" / data.name)]
    assert (out / "sub-01/func" / data.name).read_bytes() == b"nifti"
    assert DerivativesDataSink._always_run


def test_eeg_spectrogram_interface(tiny_bids, tmp_path):
    eeg = tiny_bids / "sub-03" / "eeg"
    iface = EEGSpectrogram(eeg_file=str(eeg / "sub-03_task-rest_eeg.vhdr"),
                           bold_file=str(tiny_bids / "sub-03" / "func" / "sub-03_task-rest_bold.nii.gz"),
                           repetition_time=2.0, config={"eeg": {"n_freqs": 100}, "pairing": {"n_windows": 10}})
    res = iface.run(cwd=str(tmp_path))
    out = Path(res.outputs.out_file)
    assert out == tmp_path / "sub-03" / "eeg" / "sub-03_task-rest_desc-stft_spectrogram.h5"
    from spec2vol_bids.io.spectrogram import load_spectrogram

    spec = load_spectrogram(out, data=False)
    assert spec.shape == (72, 16, 100) and spec.pair_windows.shape[1] == 10
    assert res.outputs.onset_source == "markers"


def test_predict_hash_ignores_device_but_not_weights(tmp_path):
    for name in ("a.ckpt", "b.ckpt", "s.h5", "t.nii.gz"):
        (tmp_path / name).write_bytes(name.encode())
    p = Predict(spectrogram=str(tmp_path / "s.h5"), target=str(tmp_path / "t.nii.gz"),
                checkpoint=str(tmp_path / "a.ckpt"))
    h = p.inputs.get_hashval()[1]
    p.inputs.device, p.inputs.use_gpu, p.inputs.batch_size, p.inputs.num_threads = "cuda", True, 64, 4
    assert p.inputs.get_hashval()[1] == h
    p.inputs.checkpoint = str(tmp_path / "b.ckpt")
    assert p.inputs.get_hashval()[1] != h


def test_participant_report_from_derivative_files(tiny_derivatives, tmp_path):
    from spec2vol_bids.interfaces import ParticipantReport

    files = sorted(str(p) for p in (tiny_derivatives / "sub-01").rglob("*") if p.suffix in (".h5", ".gz"))
    res = ParticipantReport(base_directory=str(tmp_path), subject="sub-01", in_files=files).run(cwd=str(tmp_path))
    report = Path(res.outputs.out_report)
    assert report == tmp_path / "sub-01.html"
    html = report.read_text()
    assert "sub-01_task-rest" in html and "<img" in html
