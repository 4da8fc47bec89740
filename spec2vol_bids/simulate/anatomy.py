"""Subject anatomy on the BOLD grid: baseline EPI image, brain mask and the BOLD maps of the sources.

The anatomy comes from nilearn's MNI152 template and brain mask (shipped with nilearn, no download), moved by a
small per-subject rigid transform (head position) and resampled to the preset's grid. The BOLD maps of the latent
sources are smooth Gaussian blobs defined in MNI millimetres, so they land on the same anatomy in every subject.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .presets import Preset

__all__ = ["SubjectAnatomy", "make_anatomy", "grid_affine", "MAP_SIGMA_MM", "GRID_CENTRE_MM"]

#: standard deviation (mm) of the Gaussian BOLD map of each source
MAP_SIGMA_MM = 32.0
#: MNI point at the centre of every BOLD grid
GRID_CENTRE_MM = (0.0, -18.0, 14.0)


@functools.lru_cache(maxsize=1)
def _template() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MNI152 T1 template (float, 0-1), brain mask (float) and their affine, 2 mm; cached.

    The mask is nilearn's ``load_mni152_brain_mask`` definition (template above 0.2), computed here from the
    same resampled template instead of resampling it a second time (it differs in a few voxels at the 0.2
    boundary through rounding).
    """
    from nilearn.datasets import load_mni152_template

    t1 = load_mni152_template(resolution=2)
    data = np.asarray(t1.get_fdata(), dtype=np.float32)
    data /= data.max()
    return data, (data > 0.2).astype(np.float32), np.asarray(t1.affine, float)


def grid_affine(preset: Preset) -> np.ndarray:
    """RAS voxel-to-world affine of the preset's grid, centred on :data:`GRID_CENTRE_MM`, shape (4, 4)."""
    zooms = np.asarray(preset.voxel_mm, float)
    shape = np.asarray(preset.grid, float)
    aff = np.diag([*zooms, 1.0])
    aff[:3, 3] = np.asarray(GRID_CENTRE_MM) - zooms * (shape - 1) / 2.0
    return aff


def _rotation(angles_rad: np.ndarray) -> np.ndarray:
    ax, ay, az = angles_rad
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


@dataclass
class SubjectAnatomy:
    """One subject's images on the BOLD grid.

    Attributes
    ----------
    affine : ndarray, shape (4, 4)
        Voxel-to-scanner affine written in the NIfTI headers.
    head_transform : ndarray, shape (4, 4)
        Rigid transform from MNI to this subject's head position (the per-subject jitter).
    baseline : ndarray, shape (X, Y, Z)
        Noise-free EPI intensity (T2*-like contrast, bias field, subject gain).
    mask : ndarray of bool, shape (X, Y, Z)
        Brain mask.
    maps : ndarray, shape (K, X, Y, Z)
        BOLD map of each source, in [0, 1], zero outside the brain.
    gain : float
        Subject intensity gain (scanner units per unit of baseline contrast).
    """

    affine: np.ndarray
    head_transform: np.ndarray
    baseline: np.ndarray
    mask: np.ndarray
    maps: np.ndarray
    gain: float


def make_anatomy(preset: Preset, rng: np.random.Generator) -> SubjectAnatomy:
    """Resample the MNI152 anatomy to the preset grid for one subject, with random head position and gain.

    The head is rotated by up to 3 degrees and shifted by up to 4 mm per axis; the intensity gain is drawn in
    [700, 1100] and a linear bias field of up to +-10 % is applied.
    """
    t1, brain, tpl_aff = _template()
    aff = grid_affine(preset)
    head = np.eye(4)
    head[:3, :3] = _rotation(np.deg2rad(rng.uniform(-3.0, 3.0, 3)))
    head[:3, 3] = rng.uniform(-4.0, 4.0, 3)
    # grid voxel -> scanner mm -> MNI mm (undo the head motion) -> template voxel
    vox_to_mni = np.linalg.inv(head) @ aff
    vox_to_tpl = np.linalg.inv(tpl_aff) @ vox_to_mni
    shape = tuple(preset.grid)
    # blur the 2 mm template to the coarser grid before sampling (anti-aliasing)
    sigma = np.maximum(np.asarray(preset.voxel_mm) / 2.0 / 2.0 - 0.5, 0.0)
    t1_s = ndimage.gaussian_filter(t1, sigma) if sigma.any() else t1
    t1_g = ndimage.affine_transform(t1_s, vox_to_tpl[:3, :3], vox_to_tpl[:3, 3], output_shape=shape, order=1)
    mask_g = ndimage.affine_transform(brain, vox_to_tpl[:3, :3], vox_to_tpl[:3, 3], output_shape=shape, order=1)
    mask = mask_g > 0.5
    # T2*-weighted EPI contrast from the T1 template: CSF bright, grey matter middle, white matter dark
    inside = np.clip(mask_g, 0.0, 1.0)
    t1n = t1_g / max(float(t1_g[mask].max()), 1e-6) if mask.any() else t1_g
    contrast = inside * (1.25 - 0.65 * np.clip(t1n, 0.0, 1.0))
    # linear bias field (receive coil) over the field of view
    ijk = np.indices(shape, dtype=float)
    centred = [(ijk[a] - (shape[a] - 1) / 2.0) / max(shape[a] - 1, 1) for a in range(3)]
    slope = rng.uniform(-0.1, 0.1, 3)
    bias = 1.0 + sum(slope[a] * centred[a] for a in range(3))
    gain = float(rng.uniform(700.0, 1100.0))
    baseline = (gain * contrast * bias).astype(np.float32)
    # source maps: Gaussian blobs around MNI centres, evaluated at each voxel's MNI position
    mni = np.tensordot(vox_to_mni[:3, :3], ijk, axes=1) + vox_to_mni[:3, 3][:, None, None, None]  # (3, X, Y, Z)
    maps = np.empty((len(preset.bands), *shape), dtype=np.float32)
    for k, band in enumerate(preset.bands):
        d2 = sum((mni[a] - band.centre_mm[a]) ** 2 for a in range(3))
        maps[k] = np.exp(-0.5 * d2 / MAP_SIGMA_MM**2) * mask
    return SubjectAnatomy(affine=aff, head_transform=head, baseline=baseline, mask=mask, maps=maps, gain=gain)
