"""Pure preprocessing functions (NumPy/SciPy only; arrays in, arrays out; no I/O, no nipype, no bids).

* :mod:`spec2vol_bids.preproc.eeg`: volume-locked EEG windows, spectra, channel selection, spectrogram scaling.
* :mod:`spec2vol_bids.preproc.fmri`: model grid, DCT resize with its affine, brain mask, per-volume scaling.
* :mod:`spec2vol_bids.preproc.pairs`: which spectrogram rows form the model input of which target volume.
"""
