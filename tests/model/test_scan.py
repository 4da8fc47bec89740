"""The selective scan: every backend against the sequential reference loop, and backend selection."""

from __future__ import annotations

import math

import pytest
import torch

from spec2vol_bids.errors import DataError, UsageError
from spec2vol_bids.model import scan as scan_mod
from spec2vol_bids.model.scan import (
    ScanBackendError,
    available_backends,
    resolve_backend,
    selective_scan,
)

CPU_BACKENDS = ["chunked"]


@pytest.fixture(params=[1, 5, 64], ids=lambda c: f"chunk{c}")
def chunked(request, monkeypatch):
    """The chunked backend with chunk length 1 (time-major recurrence, the CPU default), 5 or 64 (log-space
    closed form of each chunk)."""
    monkeypatch.setitem(scan_mod.CHUNK_LENGTH, "cpu", request.param)
    return "chunked"


def _mamba_usable() -> bool:
    return available_backends()["mamba_ssm"] is None


def _inputs(b, d, n, L, b_kind, c_kind, *, dtype=torch.float64, seed=0, delta_shift=-1.0, with_z=False):
    """Random scan inputs shaped like SS2D's (u, delta, A, B, C, D, z, delta_bias)."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return torch.randn(*shape, generator=g, dtype=dtype)

    def bc(kind):
        if kind == "dn":
            return r(d, n)
        if kind == "shared":
            return r(b, n, L)
        return r(b, int(kind[1:]), n, L)  # "g4": grouped

    u, delta = r(b, d, L), r(b, d, L) + delta_shift
    A = -torch.exp(r(d, n) * 0.5)
    return dict(u=u, delta=delta, A=A, B=bc(b_kind), C=bc(c_kind), D=r(d), z=r(b, d, L) if with_z else None,
                delta_bias=0.1 * r(d))


def _run(backend, args, *, softplus=True, last=False, use_d=True, use_bias=True, linear_loss=False):
    """Forward + backward of a loss; returns {out, (last), grad_*} detached.

    The default loss ``sum(out * cos(out))`` is non-linear (the output gradient varies); ``linear_loss`` uses
    fixed random weights instead, which keeps float32 comparisons well conditioned for large outputs.
    """
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in args.items() if v is not None}
    if not softplus:  # without the softplus the caller must give non-negative steps
        leaves["delta"] = leaves["delta"].detach().abs().requires_grad_(True)
    out = selective_scan(leaves["u"], leaves["delta"], leaves["A"], leaves["B"], leaves["C"],
                         leaves["D"] if use_d else None, leaves.get("z"),
                         leaves["delta_bias"] if use_bias else None, softplus, last, backend=backend)
    if last:
        out, h = out
    if linear_loss:
        w = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        loss = (out * w.to(out.dtype)).sum()
    else:
        loss = (out * torch.cos(out)).sum()
    results = {"out": out.detach()}
    if last:
        loss = loss + (h.float() ** 2).sum() * 0.5
        results["last"] = h.detach()
    loss.backward()
    for k, v in leaves.items():
        results["grad_" + k] = torch.zeros_like(v) if v.grad is None else v.grad.detach()
    return results


def _assert_close(ref, got, rtol):
    assert ref.keys() == got.keys()
    for k in ref:
        scale = ref[k].abs().max().item()
        err = (ref[k].double() - got[k].double()).abs().max().item()
        assert err <= rtol * max(scale, 1e-12), f"{k}: max error {err:.3e} vs scale {scale:.3e}"


def test_reference_matches_hand_computed_recurrence():
    # one channel, one state: h_t = exp(dt*a) h_{t-1} + dt*b_t*u_t, y_t = c_t h_t + D u_t, times silu(z)
    u = torch.tensor([[[1.0, -2.0, 0.5]]], dtype=torch.float64)
    delta = torch.tensor([[[0.5, 1.0, 2.0]]], dtype=torch.float64)
    A = torch.tensor([[-0.7]], dtype=torch.float64)
    B = torch.tensor([[[0.3, -1.1, 2.0]]], dtype=torch.float64)  # (b, n, l)
    C = torch.tensor([[[1.5, 0.2, -0.4]]], dtype=torch.float64)
    D = torch.tensor([0.25], dtype=torch.float64)
    z = torch.tensor([[[0.0, 1.0, -3.0]]], dtype=torch.float64)
    h, expected = 0.0, []
    for t in range(3):
        dt = delta[0, 0, t].item()
        h = math.exp(dt * -0.7) * h + dt * B[0, 0, t].item() * u[0, 0, t].item()
        y = C[0, 0, t].item() * h + 0.25 * u[0, 0, t].item()
        zt = z[0, 0, t].item()
        expected.append(y * zt / (1 + math.exp(-zt)))
    for backend in ["reference", *CPU_BACKENDS]:
        out, last = selective_scan(u, delta, A, B, C, D, z, return_last_state=True, backend=backend)
        assert torch.allclose(out[0, 0], torch.tensor(expected, dtype=torch.float64), atol=1e-14), backend
        assert last.shape == (1, 1, 1) and abs(last.item() - h) < 1e-14


@pytest.mark.parametrize(
    "b_kind,c_kind,L,opts",
    [
        ("g4", "g4", 16, dict(softplus=True, last=True)),  # SS2D's call: grouped B/C, 4 directions of 4x4
        ("g4", "g4", 64, dict(softplus=True, last=False)),  # 8x8 map
        ("g2", "shared", 37, dict(softplus=False, last=True, use_bias=False)),  # odd length: padded chunk
        ("shared", "dn", 23, dict(softplus=True, last=True, use_d=False)),
        ("dn", "g4", 9, dict(softplus=True, last=False)),
        ("dn", "dn", 12, dict(softplus=True, last=True)),
        ("g4", "g4", 1, dict(softplus=True, last=True)),  # a single step
    ],
)
def test_backend_matches_reference_fp64(chunked, b_kind, c_kind, L, opts):
    args = _inputs(2, 16, 5, L, b_kind, c_kind, with_z=L % 2 == 1)
    ref = _run("reference", args, **opts)
    got = _run(chunked, args, **opts)
    _assert_close(ref, got, rtol=1e-10)


def test_backend_matches_reference_fp32(chunked):
    # an SS2D stage-like call: K*d_inner = 4*12 channels, N = 16, an 8x8 map; delta as initialised (~1e-2)
    args = _inputs(2, 48, 16, 64, "g4", "g4", dtype=torch.float32, seed=3, delta_shift=-4.0)
    ref64 = _run("reference", {k: (v.double() if v is not None else None) for k, v in args.items()}, last=True,
                 linear_loss=True)
    got = _run(chunked, args, last=True, linear_loss=True)
    _assert_close(ref64, got, rtol=1e-4)


@pytest.mark.parametrize("max_chunk", [1, 4, 7, 64])
@pytest.mark.parametrize("a_max", [40.0, 800.0])
def test_chunked_handles_large_steps_and_any_chunk(monkeypatch, max_chunk, a_max):
    # steps so large that a long chunk would overflow exp() (a_max 800: even one step does, in float64): the
    # chunk length must shrink, results stay exact
    args = _inputs(1, 8, 4, 50, "g2", "g2", seed=5, delta_shift=3.0)
    args["A"] = -torch.linspace(1.0, a_max, 32, dtype=torch.float64).view(8, 4)
    monkeypatch.setitem(scan_mod.CHUNK_LENGTH, "cpu", max_chunk)
    ref = _run("reference", args, last=True)
    got = _run("chunked", args, last=True)
    _assert_close(ref, got, rtol=1e-10)
    for v in got.values():
        assert torch.isfinite(v).all()


def test_chunk_length_shrinks_when_decay_would_overflow():
    delta = torch.full((1, 2, 64), 0.01)
    A = -torch.ones(2, 4)
    assert scan_mod._chunk_length(delta, A, 64) == 64
    big = torch.full((1, 2, 64), 5.0)  # exponent 5 per step, limit 60 in float32 -> at most 12 steps
    T = scan_mod._chunk_length(big, A, 64)
    assert 1 <= T and T * 5.0 <= 60.0
    huge = torch.full((1, 2, 8), 100.0)  # a single step already exceeds the limit
    assert scan_mod._chunk_length(huge, A, 64) == 1


def test_chunked_float32_extreme_steps_stay_finite(chunked):
    args = _inputs(1, 8, 16, 40, "g2", "g2", dtype=torch.float32, seed=9, delta_shift=0.0)
    args["delta"] = args["delta"].abs() * 30  # softplus(~30) ~ 30 per step, A up to -5: exp(-150) per step
    ref = _run("reference", {k: (v.double() if v is not None else None) for k, v in args.items()}, linear_loss=True)
    got = _run(chunked, args, linear_loss=True)
    for v in got.values():
        assert torch.isfinite(v).all()
    _assert_close(ref, got, rtol=1e-4)


def test_output_dtype_follows_input():
    args = _inputs(1, 4, 2, 6, "shared", "shared", dtype=torch.float32)
    out = selective_scan(args["u"].half(), args["delta"], args["A"], args["B"], args["C"], backend="chunked")
    assert out.dtype == torch.float16
    out, last = selective_scan(args["u"], args["delta"], args["A"], args["B"], args["C"],
                               return_last_state=True, backend="chunked")
    assert out.dtype == torch.float32 and last.dtype == torch.float32 and last.shape == (1, 4, 2)


def test_chunked_backward_saves_only_inputs(monkeypatch):
    # the custom backward recomputes the (b, d, n, l) states instead of storing intermediates
    args = _inputs(2, 32, 16, 64, "g4", "g4", dtype=torch.float32)
    leaves = {k: v.clone().requires_grad_(True) for k, v in args.items() if v is not None}
    totals = {}
    for backend in ("reference", "chunked", "chunked64"):
        monkeypatch.setitem(scan_mod.CHUNK_LENGTH, "cpu", 64 if backend == "chunked64" else 1)
        sizes = []

        def pack(t, sizes=sizes):
            sizes.append(t.numel())
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            selective_scan(leaves["u"], leaves["delta"], leaves["A"], leaves["B"], leaves["C"], leaves["D"],
                           None, leaves["delta_bias"], True, backend=backend.replace("64", ""))
        totals[backend] = sum(sizes)
    state_numel = 2 * 32 * 16 * 64
    assert totals["chunked"] < state_numel  # not even one state tensor is kept
    assert totals["chunked64"] < state_numel
    assert totals["reference"] > 2 * state_numel


# ------------------------------------------------------------------------------------------------------------
# backend selection
# ------------------------------------------------------------------------------------------------------------
def test_available_backends_reports_every_backend():
    av = available_backends()
    assert set(av) == {"reference", "chunked", "mamba_ssm"}
    assert av["reference"] is None and av["chunked"] is None
    if not torch.cuda.is_available():
        assert isinstance(av["mamba_ssm"], str) and av["mamba_ssm"]


def test_auto_picks_chunked_on_cpu(monkeypatch):
    monkeypatch.delenv(scan_mod.ENV_VAR, raising=False)
    assert resolve_backend(None, "cpu") == "chunked"
    assert resolve_backend("auto", torch.device("cpu")) == "chunked"


def test_env_var_selects_backend(monkeypatch):
    calls = []
    real = scan_mod._scan_reference

    def spy(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(scan_mod, "_scan_reference", spy)
    monkeypatch.setenv(scan_mod.ENV_VAR, "reference")
    args = _inputs(1, 4, 2, 5, "shared", "shared")
    selective_scan(args["u"], args["delta"], args["A"], args["B"], args["C"])
    assert calls == [1]
    # the argument wins over the environment
    selective_scan(args["u"], args["delta"], args["A"], args["B"], args["C"], backend="chunked")
    assert calls == [1]
    monkeypatch.setenv(scan_mod.ENV_VAR, "Chunked")
    assert resolve_backend(None, "cpu") == "chunked"


def test_unknown_backend_lists_choices(monkeypatch):
    with pytest.raises(ScanBackendError, match=r"unknown selective-scan backend backend='fast'.*auto, reference, "
                                               r"chunked, mamba_ssm"):
        resolve_backend("fast")
    monkeypatch.setenv(scan_mod.ENV_VAR, "cuda")
    with pytest.raises(UsageError, match="SPEC2VOL_SCAN_BACKEND='cuda'"):
        resolve_backend(None)


@pytest.mark.skipif(_mamba_usable(), reason="mamba_ssm imports here; the missing-install message is not reachable")
def test_mamba_ssm_unavailable_is_a_clear_error():
    args = _inputs(1, 4, 2, 5, "shared", "shared", dtype=torch.float32)
    with pytest.raises(ScanBackendError) as info:
        selective_scan(args["u"], args["delta"], args["A"], args["B"], args["C"], backend="mamba_ssm")
    msg = str(info.value)
    assert "mamba_ssm" in msg
    assert ("pip install 'spec2vol-bids[cuda]'" in msg and "backend='chunked'" in msg) or "CUDA tensors" in msg
    assert isinstance(info.value, ValueError)  # a UsageError (exit code 64), never a NameError


def test_mamba_ssm_broken_install_message(monkeypatch):
    # simulate a broken install (an ImportError from its compiled extension) whatever is installed here
    scan_mod._mamba_ssm_fn.cache_clear()
    monkeypatch.setattr(scan_mod, "_mamba_ssm_fn",
                        lambda: (None, "ImportError: libcudart.so.12: cannot open shared object file"))
    with pytest.raises(ScanBackendError, match=r"mamba_ssm selective-scan backend is unavailable \(ImportError: "
                                               r"libcudart.*pip install 'spec2vol-bids\[cuda\]'"):
        resolve_backend("mamba_ssm", "cuda")
    assert "libcudart" in available_backends()["mamba_ssm"]
    assert resolve_backend("auto", "cuda") == "chunked"  # auto falls back silently


def test_mamba_ssm_needs_cuda_tensors(monkeypatch):
    monkeypatch.setattr(scan_mod, "_mamba_ssm_fn", lambda: (lambda *a: None, None))
    with pytest.raises(ScanBackendError, match="needs CUDA tensors, got tensors on cpu"):
        resolve_backend("mamba_ssm", "cpu")
    assert resolve_backend("auto", "cuda") == "mamba_ssm"


@pytest.mark.skipif(not _mamba_usable(), reason="needs a GPU and mamba_ssm")
def test_mamba_ssm_matches_reference_on_gpu():  # pragma: no cover - runs only on a CUDA machine
    args = _inputs(2, 48, 16, 64, "g4", "g4", dtype=torch.float32, delta_shift=-4.0)
    ref = _run("reference", args, last=True)
    got = _run("mamba_ssm", {k: (v.cuda() if v is not None else None) for k, v in args.items()}, last=True)
    _assert_close(ref, {k: v.cpu() for k, v in got.items()}, rtol=2e-3)


# ------------------------------------------------------------------------------------------------------------
# input checks
# ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "change,match",
    [
        (dict(u=torch.zeros(2, 8)), r"u must have shape \(batch, channels, length\)"),
        (dict(delta=torch.zeros(2, 8, 4)), "delta must have u's shape"),
        (dict(A=torch.zeros(7, 4)), r"A must have shape \(8, n\)"),
        (dict(B=torch.zeros(2, 3, 4, 5)), r"B must have shape .* with g dividing 8"),
        (dict(C=torch.zeros(2, 4, 6)), "C must have shape"),
        (dict(D=torch.zeros(4)), r"D must have shape \(8,\)"),
        (dict(z=torch.zeros(2, 8, 4)), "z must have u's shape"),
        (dict(A=torch.zeros(8, 4, dtype=torch.complex64)), "complex A is not supported"),
        (dict(B=torch.zeros(2, 2, 4, 5), C=torch.zeros(2, 4, 4, 5)), "same number of groups, got 2 and 4"),
    ],
)
def test_bad_shapes_raise_data_error(change, match):
    args = dict(u=torch.zeros(2, 8, 5), delta=torch.zeros(2, 8, 5), A=torch.zeros(8, 4),
                B=torch.zeros(2, 4, 5), C=torch.zeros(2, 4, 5), D=None, z=None)
    args.update(change)
    with pytest.raises(DataError, match=match):
        selective_scan(**args, backend="chunked")


def test_double_backward_is_a_clear_error(chunked):
    args = _inputs(1, 4, 2, 6, "shared", "shared")
    u = args["u"].clone().requires_grad_(True)
    out = selective_scan(u, args["delta"], args["A"], args["B"], args["C"], backend=chunked)
    (g,) = torch.autograd.grad(out.square().sum(), u, create_graph=True)
    with pytest.raises(RuntimeError, match="twice|double|once"):
        g.sum().backward()
