"""spec2vol-bids: Spec2VolCAMU-Net as a BIDS-App, nipype workflows and a napari plugin.

Heavy dependencies (torch, nipype, nilearn) are imported lazily by the submodules that need them,
so ``import spec2vol_bids`` and ``spec2vol_bids --help`` stay fast. Importing the package changes nothing in the
process: the command-line entry point (:func:`spec2vol_bids.cli.main.main`) sets what its runs need
(``OMP_WAIT_POLICY``), a library user keeps control of their own environment.
"""

from ._version import __version__

__all__ = ["__version__"]
