"""napari plugin for spec2vol-bids: load EEG, run Spec2VolCAMU-Net, compare predicted and measured BOLD."""

from spec2vol_bids._version import __version__

__all__ = ["__version__"]
