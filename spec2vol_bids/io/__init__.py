"""Every on-disk format spec2vol-bids defines, in one place: names, readers and writers.

* :mod:`~spec2vol_bids.io.names` - BIDS file names: entities, derivative paths (pybids path patterns), JSON
  sidecar paths and BIDS URIs;
* :mod:`~spec2vol_bids.io.derivatives` - the declaration of every derivative the BIDS-App writes (entities,
  ``Description`` and the sidecar metadata BIDS requires), as fMRIPrep's ``workflows/bold/outputs.py``;
* :mod:`~spec2vol_bids.io.spectrogram` - the spectrogram derivative (HDF5 + JSON sidecar): one reader
  (:func:`~spec2vol_bids.io.spectrogram.load_spectrogram`, returning a
  :class:`~spec2vol_bids.io.spectrogram.SpectrogramFile`), its MNE-Python view (:func:`read_spectrogram`, an
  ``mne.time_frequency.EpochsSpectrumArray``) and one writer;
* :mod:`~spec2vol_bids.io.hdf5` - HDF5 attribute encoding and per-process lazy file handles;
* :mod:`~spec2vol_bids.io.nifti` - NIfTI images with their sidecars;
* :mod:`~spec2vol_bids.io.tables` - TSV tables (one writer, one reader) with their JSON column descriptions;
* :mod:`~spec2vol_bids.io.dataset` - the derivative dataset's ``dataset_description.json`` and ``.bidsignore``.

Nothing here computes: the steps of :mod:`spec2vol_bids.pipeline` compute arrays and hand them to these writers,
and every reader of the project (training, prediction, reports, the napari plugin, the tests) reads through them.
Importing this package imports neither h5py, nibabel nor pybids (they are imported when a file is read or written).
"""

from .spectrogram import read_spectrogram

__all__ = ["read_spectrogram"]
