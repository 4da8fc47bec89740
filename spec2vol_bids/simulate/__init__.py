"""Synthetic simultaneous EEG-fMRI BIDS datasets with a known ground truth.

:func:`simulate_dataset` writes a raw BIDS dataset (BrainVision EEG with ``R128`` volume markers, 4-D BOLD NIfTI)
whose BOLD signal is driven by the band power of latent EEG sources through the canonical HRF, plus the ground
truth under ``derivatives/simulation/`` and the noise ceiling of the SSIM, PSNR and dynamic correlation.
"""

from .dataset import SIMULATION_DIR, simulate_dataset
from .presets import PRESETS, Band, Preset, get_preset

__all__ = ["simulate_dataset", "PRESETS", "Preset", "Band", "get_preset", "SIMULATION_DIR"]
