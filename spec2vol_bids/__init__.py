"""spec2vol-bids: Spec2VolCAMU-Net as a BIDS-App, nipype workflows and a napari plugin.

Heavy dependencies (torch, nipype, nilearn) are imported lazily by the submodules that need them,
so ``import spec2vol_bids`` and ``spec2vol_bids --help`` stay fast.
"""

import os as _os

from ._version import __version__

# OpenMP threads that spin while waiting make torch 10-30x slower as soon as the cores are shared (nipype
# MultiProc workers, a second job on a laptop, a busy cluster node): measured here, a training step of the tiny
# model took 6 s instead of 0.6 s. Passive waiting costs nothing measurable on an idle machine. It must be set
# before the OpenMP runtime starts (the first torch import); an explicit user setting is kept.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__all__ = ["__version__"]
