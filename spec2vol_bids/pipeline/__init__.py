"""The application layer: what the command line, the nipype interfaces and the napari plugin all call.

* :mod:`~spec2vol_bids.pipeline.steps` - the run-level steps (header checks, spectrogram, target, prediction);
* :mod:`~spec2vol_bids.pipeline.group` - the group level (metrics of every predicted run, table and report);
* :mod:`~spec2vol_bids.pipeline.report_data` - what the participant report shows, read back from the derivatives;
* :mod:`~spec2vol_bids.pipeline.training` - a training experiment (``spec2vol_bids train``): folds x models,
  metrics tables, the training report and ``model.ckpt``.

Each function reads with :mod:`spec2vol_bids.bids` and :mod:`spec2vol_bids.io`, computes with
:mod:`spec2vol_bids.preproc`, :mod:`spec2vol_bids.train` and :mod:`spec2vol_bids.reports`, and writes through
:mod:`spec2vol_bids.io`. Submodules are imported on demand.
"""
