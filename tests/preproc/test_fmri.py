"""Tests of spec2vol_bids.preproc.fmri against explicit-matrix and nibabel/nilearn oracles."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from nibabel.affines import apply_affine, rescale_affine, voxel_sizes

from spec2vol_bids.config import BOLDConfig
from spec2vol_bids.errors import DataError
from spec2vol_bids.preproc import fmri


def dct_matrix(n: int) -> np.ndarray:
    """Orthonormal DCT-II matrix D[k, i] = sqrt(2/n) c_k cos(pi k (2i + 1) / 2n), c_0 = 1/sqrt(2)."""
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    d = np.sqrt(2.0 / n) * np.cos(np.pi * k * (2 * i + 1) / (2 * n))
    d[0] /= np.sqrt(2.0)
    return d


def official_dct_downsample(vol: np.ndarray, shape) -> np.ndarray:
    """Keep the low-frequency corner of the ortho 3-D DCT-II and invert on the small grid (explicit matrices)."""
    dx, dy, dz = (dct_matrix(n) for n in vol.shape)
    coef = np.einsum("ai,bj,ck,ijk->abc", dx, dy, dz, vol)
    c = coef[: shape[0], : shape[1], : shape[2]]
    ex, ey, ez = (dct_matrix(m) for m in shape)
    return np.einsum("ai,bj,ck,abc->ijk", ex, ey, ez, c)


def smooth_field(shape, positions=None):
    """A band-limited field: sum of low DCT cosines, evaluated at continuous voxel coordinates."""
    n = np.asarray(shape, float)
    grids = positions or [np.arange(s, dtype=float) for s in shape]
    terms = [((1, 0, 0), 1.0), ((0, 2, 1), 0.7), ((3, 1, 2), -0.4), ((0, 0, 0), 5.0)]
    out = 0.0
    for (kx, ky, kz), a in terms:
        cx = np.cos(np.pi * kx * (grids[0] + 0.5) / n[0])
        cy = np.cos(np.pi * ky * (grids[1] + 0.5) / n[1])
        cz = np.cos(np.pi * kz * (grids[2] + 0.5) / n[2])
        out = out + a * cx[:, None, None] * cy[None, :, None] * cz[None, None, :]
    return out


def test_dct_resize_matches_explicit_matrices():
    rng = np.random.default_rng(0)
    vol = rng.random((27, 22, 16))
    got = fmri.dct_resize(vol, (12, 10, 7), preserve_intensity=False)
    np.testing.assert_allclose(got, official_dct_downsample(vol, (12, 10, 7)), atol=1e-10)
    scaled = fmri.dct_resize(vol, (12, 10, 7))
    np.testing.assert_allclose(scaled.mean(), vol.mean(), rtol=1e-10)  # mean intensity preserved
    np.testing.assert_array_equal(fmri.dct_resize(vol, vol.shape), vol)


def test_dct_resize_is_exact_for_band_limited_fields():
    native, new = (27, 21, 16), (12, 9, 10)  # shrink x, y; enlarge z
    vol = smooth_field(native)
    pos = [(np.arange(m) + 0.5) * n / m - 0.5 for n, m in zip(native, new)]  # new centres in native voxels
    np.testing.assert_allclose(fmri.dct_resize(vol, new), smooth_field(native, pos), atol=1e-10)


def test_resized_affine_matches_nibabel_and_keeps_field_of_view():
    rng = np.random.default_rng(5)
    rot, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag([2.0, 2.2, 3.0])
    affine[:3, 3] = [-100.0, -120.0, 40.0]
    # nibabel keeps the world position of voxel (shape - 1) // 2: the exact centre for odd shapes
    odd, odd_new = (107, 107, 63), (63, 63, 29)
    zooms = voxel_sizes(affine) * np.array(odd) / np.array(odd_new)
    np.testing.assert_allclose(fmri.resized_affine(affine, odd, odd_new),
                               rescale_affine(affine, odd, zooms, odd_new), atol=1e-9)
    native, new = (108, 108, 64), (64, 64, 30)
    got = fmri.resized_affine(affine, native, new)
    np.testing.assert_allclose(voxel_sizes(got), voxel_sizes(affine) * np.array(native) / np.array(new))
    # the outer voxel edges stay in place
    lo_n = apply_affine(affine, [-0.5, -0.5, -0.5])
    hi_n = apply_affine(affine, np.array(native) - 0.5)
    np.testing.assert_allclose(apply_affine(got, [-0.5, -0.5, -0.5]), lo_n, atol=1e-9)
    np.testing.assert_allclose(apply_affine(got, np.array(new) - 0.5), hi_n, atol=1e-9)


def test_dct_resize_agrees_with_nilearn_resampling():
    from nilearn.image import resample_img

    native, new = (40, 36, 24), (20, 18, 12)
    affine = np.diag([3.0, 3.0, 4.0, 1.0])
    affine[:3, 3] = [-60, -54, -48]
    vol = smooth_field(native)
    img = nib.Nifti1Image(vol.astype(np.float32), affine)
    new_aff = fmri.resized_affine(affine, native, new)
    ref = resample_img(img, target_affine=new_aff, target_shape=new, interpolation="continuous",
                       force_resample=True, copy_header=True).get_fdata()
    got = fmri.dct_resize(vol, new)
    inner = (slice(2, -2),) * 3  # spline boundary handling differs at the edges
    assert np.corrcoef(got[inner].ravel(), ref[inner].ravel())[0, 1] > 0.999
    np.testing.assert_allclose(got[inner], ref[inner], atol=0.05)


@pytest.mark.parametrize("native, cfg, expected", [
    ((64, 64, 30), BOLDConfig(), (64, 64, 30)),       # NODDI: already on the grid
    ((64, 64, 32), BOLDConfig(), (64, 64, 32)),       # Oddball
    ((108, 108, 64), BOLDConfig(), (64, 64, 30)),     # CN-EPFL
    ((108, 108, 64), BOLDConfig(n_slices=32), (64, 64, 32)),
    ((64, 64, 32), BOLDConfig(resize="none"), (64, 64, 32)),
    ((80, 80, 40), BOLDConfig(grid=32, n_slices=20), (32, 32, 20)),
])
def test_target_shape(native, cfg, expected):
    assert fmri.target_shape(native, cfg) == expected


def test_target_shape_refuses_off_grid_without_resize():
    with pytest.raises(DataError, match="resize"):
        fmri.target_shape((108, 108, 64), BOLDConfig(resize="none"))


def phantom(shape=(32, 32, 16), n_vol=4, seed=0):
    """Noisy ellipsoid head on a dark background, intensity drifting over volumes."""
    rng = np.random.default_rng(seed)
    g = np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij")
    inside = (g[0] / 0.7) ** 2 + (g[1] / 0.8) ** 2 + (g[2] / 0.75) ** 2 <= 1
    data = np.empty((*shape, n_vol))
    for t in range(n_vol):
        data[..., t] = 10 + 90 * inside * (1 + 0.1 * t) + rng.normal(0, 3, shape)
    return data, inside


def test_brain_mask_recovers_the_head():
    data, inside = phantom()
    mask = fmri.brain_mask(data)
    dice = 2 * (mask & inside).sum() / (mask.sum() + inside.sum())
    assert mask.dtype == bool and dice > 0.97


def test_scale_volumes():
    data, inside = phantom()
    mm = fmri.scale_volumes(data, "minmax")
    ref = (data - data.min(axis=(0, 1, 2))) / np.ptp(data, axis=(0, 1, 2))
    np.testing.assert_allclose(mm, ref, rtol=1e-6, atol=1e-6)
    assert mm.dtype == np.float32
    mk = fmri.scale_volumes(data, "minmax-mask", mask=inside)
    assert np.all(mk[~inside] == 0)
    np.testing.assert_allclose(mk[inside].min(axis=0), 0, atol=1e-7)
    np.testing.assert_allclose(mk[inside].max(axis=0), 1, atol=1e-6)
    z = fmri.scale_volumes(data, "zscore", mask=inside)
    np.testing.assert_allclose(z[inside].mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(z[inside].std(axis=0), 1, atol=1e-5)
    assert np.all(z[~inside] == 0)
    # without a mask, minmax-mask computes one; a constant volume becomes zeros, never NaN
    auto = fmri.scale_volumes(data, "minmax-mask")
    assert (auto[..., 0] == 0).sum() >= (~inside).sum() * 0.9
    assert np.all(fmri.scale_volumes(np.ones((4, 4, 4, 2)), "minmax") == 0)
    with pytest.raises(DataError, match="mask shape"):
        fmri.scale_volumes(data, "zscore", mask=inside[:-1])
    # in place into a float32 buffer gives the same result
    buf = data.astype(np.float32)
    res = fmri.scale_volumes(buf, "minmax", out=buf)
    assert res is buf
    np.testing.assert_allclose(buf, ref, atol=1e-5)


@pytest.mark.slow
def test_bold_target_official_pipeline():
    data, _ = phantom(shape=(27, 27, 16), n_vol=3)
    cfg = BOLDConfig(grid=16, n_slices=10)
    affine = np.diag([3.0, 3.0, 3.5, 1.0])
    out = fmri.bold_target(data, affine, cfg)
    assert out.data.shape == (16, 16, 10, 3) and out.data.dtype == np.float32
    for t in range(3):
        ref = official_dct_downsample(data[..., t], (16, 16, 10))
        ref = (ref - ref.min()) / (ref.max() - ref.min())
        np.testing.assert_allclose(out.data[..., t], ref, atol=1e-5)
    np.testing.assert_allclose(out.affine, fmri.resized_affine(affine, (27, 27, 16), (16, 16, 10)))
    assert out.resized and out.native_shape == (27, 27, 16) and out.mask.dtype == np.uint8
    assert 0 < out.mask.sum() < out.mask.size
    seen = []
    fmri.bold_target(data, affine, cfg, progress=lambda d, t: seen.append((d, t)))
    assert seen == [(1, 3), (2, 3), (3, 3)]
    data[1, 1, 1, 2] = np.nan
    with pytest.raises(DataError, match="volume 2"):
        fmri.bold_target(data, affine, cfg)


def test_nearest_resize_mask_follows_the_resized_affine():
    rng = np.random.default_rng(1)
    mask = rng.random((27, 20, 16)) > 0.5
    affine = np.diag([3.0, 3.0, 3.5, 1.0])
    affine[:3, 3] = [-40.0, -30.0, -20.0]
    shape = (16, 16, 10)
    out = fmri.nearest_resize_mask(mask, shape)
    assert out.shape == shape and out.dtype == bool
    # oracle: the native voxel nearest to each new voxel centre, through both affines
    new_affine = fmri.resized_affine(affine, mask.shape, shape)
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1).reshape(-1, 3)
    native = apply_affine(np.linalg.inv(affine), apply_affine(new_affine, ijk))
    idx = np.floor(native + 0.5).astype(int)
    np.testing.assert_array_equal(out.reshape(-1), mask[idx[:, 0], idx[:, 1], idx[:, 2]])
    np.testing.assert_array_equal(fmri.nearest_resize_mask(mask, mask.shape), mask)  # same grid: unchanged


def test_bold_target_with_a_given_mask():
    data, inside = phantom(shape=(27, 27, 16), n_vol=3)
    cfg = BOLDConfig(grid=16, n_slices=10, scaling="minmax-mask")
    box = np.zeros((27, 27, 16), dtype=np.uint8)
    box[5:20, 6:22, 3:12] = 1
    out = fmri.bold_target(data, np.eye(4), cfg, mask=box)
    expected = fmri.nearest_resize_mask(box, (16, 16, 10))
    np.testing.assert_array_equal(out.mask, expected.astype(np.uint8))
    assert np.all(out.data[~expected] == 0)  # minmax-mask: the given mask, not a computed one, is used
    assert out.data[expected].min() == pytest.approx(0.0) and out.data[expected].max() == pytest.approx(1.0)
    with pytest.raises(DataError, match="differs from the BOLD grid"):
        fmri.bold_target(data, np.eye(4), cfg, mask=box[:-1])
    with pytest.raises(DataError, match="empty"):
        fmri.bold_target(data, np.eye(4), cfg, mask=np.zeros_like(box))
