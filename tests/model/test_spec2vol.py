"""Spec2VolCAMU-Net: paper shapes and parameter count, the tiny preset trains, config, errors, registry."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from spec2vol_bids.errors import DataError, UsageError
from spec2vol_bids.model import MODELS, PRESETS, Spec2VolCAMUNet, build_model, model_names, register_model

# notes/reference-implementation.md §1.2: the official classes instantiated on CPU
PAPER_PARAMS = {30: 45_927_230, 32: 45_927_280}

DATASETS = {  # name: (n_electrodes, n_slices) with 20 windows x 249 bins
    "NODDI": (64, 30),
    "Oddball": (43, 32),
    "CN-EPFL": (64, 30),
}

_paper_cache: dict = {}


def _paper_model(n_electrodes, n_slices):
    key = (n_electrodes, n_slices)
    if key not in _paper_cache:
        torch.manual_seed(0)
        _paper_cache[key] = Spec2VolCAMUNet(n_windows=20, n_electrodes=n_electrodes, n_freqs=249,
                                            n_slices=n_slices).eval()
    return _paper_cache[key]


@pytest.mark.slow
@pytest.mark.parametrize("dataset", list(DATASETS))
def test_paper_preset_output_shapes(dataset):
    n_el, n_sl = DATASETS[dataset]
    model = _paper_model(n_el, n_sl)
    x = torch.randn(1, 20, n_el, 249)
    with torch.no_grad():
        y = model(x)
    assert y.shape == (1, n_sl, 64, 64) and y.dtype == torch.float32
    assert torch.isfinite(y).all() and y.std() > 0


@pytest.mark.parametrize("n_slices", [30, 32])
def test_paper_parameter_count_matches_the_official_model(n_slices):
    model = Spec2VolCAMUNet.from_preset("paper", n_slices=n_slices)
    n = sum(p.numel() for p in model.parameters())
    print(f"Spec2VolCAMUNet paper preset, {n_slices} slices: {n:,} parameters "
          f"(official: {PAPER_PARAMS[n_slices]:,})")
    # exact: same layers, same widths, same biases as the official Spectrogram2fMRI + VM-UNet
    assert n == PAPER_PARAMS[n_slices]
    assert sum(p.numel() for p in model.encoder.parameters()) == 1_264_064


@pytest.mark.slow
def test_tiny_preset_overfits_a_fixed_batch_and_every_parameter_learns():
    torch.manual_seed(0)
    model = Spec2VolCAMUNet.from_preset("tiny", n_electrodes=16, n_slices=8)
    x = torch.randn(2, 20, 16, 249)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 64), torch.linspace(-1, 1, 64), indexing="ij")
    centres = torch.rand(2, 8, 2) * 1.2 - 0.6  # one Gaussian blob per slice and sample
    target = torch.exp(-((xx - centres[..., 0, None, None]) ** 2 + (yy - centres[..., 1, None, None]) ** 2) / 0.1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for step in range(40):
        opt.zero_grad()
        loss = torch.mean((model(x) - target) ** 2)
        loss.backward()
        if step == 0:
            no_grad = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.any()]
            assert no_grad == [], f"parameters without gradient: {no_grad}"
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 10, losses


def test_tiny_preset_is_small_and_documented():
    model = Spec2VolCAMUNet.from_preset("tiny", n_electrodes=16, n_slices=8)
    n = sum(p.numel() for p in model.parameters())
    assert n < 2_000_000  # about 4 % of the 45.9 M paper network
    assert model.config["hidden"] == PRESETS["tiny"]["hidden"]
    assert model.input_shape == (20, 16, 249) and model.output_shape == (8, 64, 64)


def test_config_rebuilds_the_same_model():
    torch.manual_seed(0)
    model = Spec2VolCAMUNet.from_preset("tiny", n_windows=10, n_electrodes=12, n_freqs=120, n_slices=5,
                                        drop_path=0.1)
    clone = Spec2VolCAMUNet(**model.config)
    assert clone.config == model.config
    clone.load_state_dict(model.state_dict())  # identical parameter names and shapes
    model.eval()
    clone.eval()
    x = torch.randn(1, 10, 12, 120)
    with torch.no_grad():
        assert torch.equal(model(x), clone(x))
    # the config is made of plain containers (fits torch.load(weights_only=True) and JSON)
    import json

    assert json.loads(json.dumps(model.config)) == model.config


def test_other_frequency_counts_fit_or_fail_clearly():
    torch.manual_seed(0)
    small = Spec2VolCAMUNet.from_preset("tiny", n_electrodes=8, n_freqs=100, n_slices=4).eval()
    with torch.no_grad():
        assert small(torch.randn(1, 20, 8, 100)).shape == (1, 4, 64, 64)
    Spec2VolCAMUNet.from_preset("tiny", n_electrodes=8, n_freqs=256, n_slices=4)  # 64 columns: just fits
    with pytest.raises(DataError, match=r"257 frequency bins give an encoded width of 65 > grid 64.*at most 256"):
        Spec2VolCAMUNet.from_preset("tiny", n_electrodes=8, n_freqs=257, n_slices=4)


def test_too_many_electrodes_is_a_data_error():
    with pytest.raises(DataError, match=r"65 electrodes do not fit the 64x64 grid.*select at most 64 channels"):
        Spec2VolCAMUNet(n_electrodes=65)


@pytest.mark.parametrize(
    "shape,match",
    [
        ((20, 16, 249), r"got \[20, 16, 249\].*add a batch axis with x\[None\]"),
        ((2, 20, 15, 249), r"expects input \[batch, windows, electrodes, freqs\] = \[B, 20, 16, 249\], "
                           r"got \[2, 20, 15, 249\]"),
        ((2, 19, 16, 249), "got \\[2, 19, 16, 249\\]"),
        ((2, 20, 16, 248), "check the number of TR windows"),
        ((1, 2, 20, 16, 249), "got \\[1, 2, 20, 16, 249\\]"),
    ],
)
def test_wrong_input_shape_is_a_data_error(shape, match):
    model = Spec2VolCAMUNet.from_preset("tiny", n_electrodes=16, n_slices=8)
    with pytest.raises(DataError, match=match) as info:
        model(torch.zeros(shape))
    assert isinstance(info.value, ValueError)


def test_integer_or_mismatched_dtype_input_is_a_data_error():
    model = Spec2VolCAMUNet.from_preset("tiny", n_electrodes=16, n_slices=8)
    with pytest.raises(DataError, match="floating-point"):
        model(torch.zeros(1, 20, 16, 249, dtype=torch.int64))
    with pytest.raises(DataError, match=r"torch.float32 weights but the input is torch.float64.*x.to\(torch.float32\)"):
        model(torch.zeros(1, 20, 16, 249, dtype=torch.float64))


def test_bad_hyperparameters_are_usage_errors():
    with pytest.raises(UsageError, match="grid must be a multiple of 32"):
        Spec2VolCAMUNet(grid=48)
    with pytest.raises(UsageError, match="divisible by heads"):
        Spec2VolCAMUNet(hidden=30, heads=8)
    with pytest.raises(UsageError, match="n_slices must be a positive integer"):
        Spec2VolCAMUNet(n_slices=0)
    with pytest.raises(UsageError, match="unknown Spec2VolCAMUNet preset 'huge'.*paper, tiny"):
        Spec2VolCAMUNet.from_preset("huge")


def test_set_scan_backend_reaches_every_layer():
    model = Spec2VolCAMUNet.from_preset("tiny", n_electrodes=16, n_slices=8, scan_backend="chunked")
    ss2d = [m for m in model.modules() if type(m).__name__ == "SS2D"]
    assert ss2d and all(m.scan_backend == "chunked" for m in ss2d)
    model.set_scan_backend("reference")
    assert all(m.scan_backend == "reference" for m in ss2d) and model.config["scan_backend"] == "reference"


def test_reference_and_chunked_backends_give_the_same_network_output():
    torch.manual_seed(0)
    model = Spec2VolCAMUNet.from_preset("tiny", n_electrodes=16, n_slices=8).eval()
    x = torch.randn(1, 20, 16, 249)
    with torch.no_grad():
        model.set_scan_backend("chunked")
        a = model(x)
        model.set_scan_backend("reference")
        b = model(x)
    assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)


def test_registry_builds_models_by_name():
    assert "spec2vol" in MODELS and "spec2vol" in model_names()
    model = build_model("spec2vol", preset="tiny", n_electrodes=16, n_slices=8)
    assert isinstance(model, Spec2VolCAMUNet) and model.config["n_slices"] == 8
    rebuilt = build_model("spec2vol", **model.config)
    assert rebuilt.config == model.config
    with pytest.raises(UsageError, match="unknown model 'unet'.*spec2vol"):
        build_model("unet")


def test_register_model_decorator():
    @register_model("_test_identity")
    def _builder(**kwargs):
        return torch.nn.Identity()

    try:
        assert isinstance(build_model("_test_identity"), torch.nn.Identity)
        with pytest.raises(ValueError, match="already registered"):
            register_model("_test_identity")(lambda: None)
    finally:
        MODELS.pop("_test_identity", None)


@pytest.mark.slow
def test_model_package_imports_stay_light():
    code = (
        "import sys, spec2vol_bids.model as m; m.Spec2VolCAMUNet; "
        "bad = [k for k in sys.modules if k.split('.')[0] in ('nipype', 'napari', 'mamba_ssm', 'bids', 'mne') "
        "or k.startswith(('spec2vol_bids.bids', 'spec2vol_bids.cli', 'spec2vol_bids.workflows'))]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
