"""nipype workflows of spec2vol-bids (builders named ``init_*_wf``, keyword-only arguments).

Importing this package imports nipype; the command line imports it only when a workflow is built.
"""

from .base import (
    init_bold_target_wf,
    init_eeg_spectrogram_wf,
    init_spec2vol_bids_wf,
    init_spec2vol_wf,
)

__all__ = ["init_eeg_spectrogram_wf", "init_bold_target_wf", "init_spec2vol_wf", "init_spec2vol_bids_wf"]
