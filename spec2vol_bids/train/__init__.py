"""Training and evaluation on the participant-level derivatives (``spec2vol_bids train``).

Submodules (imported on demand, so that ``import spec2vol_bids.train.metrics`` stays light):

* :mod:`~spec2vol_bids.train.metrics` - published SSIM / PSNR, dynamic correlation (NumPy and torch);
* :mod:`~spec2vol_bids.train.losses` - ``0.5 (1 - SSIM) + 0.5 MSE``;
* :mod:`~spec2vol_bids.train.discovery` - find the runs of an experiment and check they can share one model;
* :mod:`~spec2vol_bids.train.runs` - one run's pairs read lazily (derivatives, or the official h5 files);
* :mod:`~spec2vol_bids.train.target_cache` - a target NIfTI as a memory-mappable ``.npy``, read volume by volume;
* :mod:`~spec2vol_bids.train.scaling` - EEG input statistics from the training subjects only;
* :mod:`~spec2vol_bids.train.data` - the dataset of pairs (``PairDataset``), target statistics, and the data
  layer's public names;
* :mod:`~spec2vol_bids.train.splits` - LOSO / fixed split / no test set, with a validation subject;
* :mod:`~spec2vol_bids.train.schedule` - warm-up + cosine with hard restarts (paper and official variants);
* :mod:`~spec2vol_bids.train.loop` - training and evaluation of one model on one fold, exact resume;
* :mod:`~spec2vol_bids.train.checkpoint` - safe checkpoints (``load_checkpoint``, ``check_compatible``);
* :mod:`~spec2vol_bids.train.predict` - ``predict_windows`` for the BIDS-App and the napari plugin.

A whole experiment (folds x models, tables, report, ``model.ckpt``) is :mod:`spec2vol_bids.pipeline.training`.
"""
