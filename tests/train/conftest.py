"""Small fake participant-level derivatives that follow CONTRIBUTING.md's data contract exactly.

Each run has a few latent sources ``s[v, j]`` (smooth random time courses). The spectrogram row of volume ``v`` is
``1 + A[j, c, f] s[v, j]`` (+ a little noise) and the target volume ``t`` is ``mean_img + sum_j map_j (0.6 s[t-1, j]
+ 0.4 s[t-2, j])`` (+ noise): a linear EEG -> BOLD relation through the pair windows ``t - W .. t - 1``, shared by
every subject (``A``, ``map_j``, ``mean_img`` do not depend on the subject), so a model can learn it across
subjects.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from spec2vol_bids.io.spectrogram import write_spectrogram

N_WINDOWS = 4
N_CH = 6
N_FREQS = 12
N_SLICES = 2
GRID = 64
TR = 2.0


def _shared(seed=1234, n_src=3, n_ch=N_CH, n_freqs=N_FREQS, n_slices=N_SLICES, grid=GRID):
    rng = np.random.default_rng(seed)
    A = rng.uniform(0.2, 1.0, (n_src, n_ch, n_freqs))
    xx, yy = np.meshgrid(np.linspace(-1, 1, grid), np.linspace(-1, 1, grid), indexing="ij")
    brain = (xx**2 + yy**2) < 0.6
    mean_img = np.where(brain, 0.5 + 0.2 * np.cos(3 * xx) * np.sin(2 * yy), 0.05)  # [X, Y]
    maps = []
    for _ in range(n_src):
        cx, cy = rng.uniform(-0.5, 0.5, 2)
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 0.08) * brain
        maps.append(np.stack([blob * (1 + 0.3 * z) for z in range(n_slices)], axis=-1))  # [X, Y, Z]
    return A, mean_img, np.stack(maps), brain


def write_run(root: Path, sub: str, *, run: int = 1, n_volumes: int = 40, seed: int = 0, channels=None,
              frequencies=None, n_windows: int = N_WINDOWS, noise: float = 0.01, discard: int = 2,
              learnable: bool = True):
    """Write one run's spectrogram .h5 (+ .json), target .nii.gz (+ .json) and brain mask. Returns the paths."""
    A, mean_img, maps, brain = _shared()
    n_src, n_ch, n_freqs = A.shape
    rng = np.random.default_rng(seed)
    s = np.zeros((n_volumes, n_src))
    e = rng.standard_normal((n_volumes, n_src))
    for v in range(1, n_volumes):
        s[v] = 0.5 * s[v - 1] + e[v]
    spec = 1.0 + np.einsum("vj,jcf->vcf", s, A) + 0.02 * rng.standard_normal((n_volumes, n_ch, n_freqs))
    drive = np.zeros_like(s)
    drive[2:] = 0.6 * s[1:-1] + 0.4 * s[:-2]
    if not learnable:
        drive = rng.standard_normal(drive.shape)
    vol = mean_img[..., None, None] + 0.03 * np.einsum("jxyz,vj->xyzv", maps, drive)
    vol = vol + noise * rng.standard_normal(vol.shape)  # [X, Y, Z, T]
    base = f"sub-{sub}_task-rest_run-{run:02d}"
    eeg = root / f"sub-{sub}" / "eeg"
    func = root / f"sub-{sub}" / "func"
    eeg.mkdir(parents=True, exist_ok=True)
    func.mkdir(parents=True, exist_ok=True)
    channels = channels or [f"E{i:02d}" for i in range(n_ch)]
    freqs = frequencies if frequencies is not None else np.arange(1, n_freqs + 1) / TR
    firsts = np.arange(discard, n_volumes - n_windows)
    windows = (firsts[:, None] + np.arange(n_windows)[None]).astype(np.int32)
    targets = (firsts + n_windows).astype(np.int32)
    attrs = {"channels": channels, "channel_types": ["eeg"] * len(channels), "sfreq": 250.0, "repetition_time": TR,
             "window_length": TR, "taper": "boxcar", "units": "a.u.", "onset_source": "markers",
             "config": {"n_windows": n_windows, "discard": discard}}
    spec_path = eeg / f"{base}_desc-stft_spectrogram.h5"
    write_spectrogram(spec_path, spectrogram=spec, valid=np.ones(n_volumes, bool), frequencies=freqs,
                      volume_onsets=np.arange(n_volumes) * TR, pair_windows=windows, pair_targets=targets,
                      attrs=attrs, sidecar={"Sources": []})
    affine = np.diag([3.0, 3.0, 4.0, 1.0])
    img = nib.Nifti1Image(vol.astype(np.float32), affine)
    img.header.set_xyzt_units("mm", "sec")
    img.header["pixdim"][4] = TR
    tgt = func / f"{base}_desc-target_bold.nii.gz"
    nib.save(img, tgt)
    (func / f"{base}_desc-target_bold.json").write_text(json.dumps(
        {"RepetitionTime": TR, "TaskName": "rest", "Sources": [], "Description": "test", "Scaling": "none",
         "Resize": "none", "NativeShape": list(vol.shape), "NativeAffine": affine.tolist()}))
    mask = np.repeat(brain[..., None], vol.shape[2], axis=2).astype(np.uint8)
    nib.save(nib.Nifti1Image(mask, affine), func / f"{base}_desc-brain_mask.nii.gz")
    return {"spectrogram": spec_path, "target": tgt, "spec": spec, "vol": vol, "windows": windows,
            "targets": targets}


def make_derivatives(root: Path, subjects=("01", "02", "03", "04"), **kw) -> Path:
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset_description.json").write_text(json.dumps(
        {"Name": "fake", "BIDSVersion": "1.9.0", "DatasetType": "derivative",
         "GeneratedBy": [{"Name": "spec2vol-bids"}]}))
    for i, sub in enumerate(subjects):
        write_run(root, sub, seed=100 + i, **kw)
    return root


@pytest.fixture
def fake_derivs(tmp_path) -> Path:
    """Four subjects, one run each, 40 volumes, 6 channels x 12 bins, 64 x 64 x 2 targets, 4 windows."""
    return make_derivatives(tmp_path / "derivs")


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """One intra-op thread: bitwise reproducible on CPU and fast on a shared, oversubscribed machine."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
