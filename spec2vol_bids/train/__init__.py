"""Training and evaluation on the participant-level derivatives (``spec2vol_bids train``).

Submodules (imported on demand, so that ``import spec2vol_bids.train.metrics`` stays light):

* :mod:`~spec2vol_bids.train.metrics` - published SSIM / PSNR, dynamic correlation (NumPy and torch);
* :mod:`~spec2vol_bids.train.losses` - ``0.5 (1 - SSIM) + 0.5 MSE``;
* :mod:`~spec2vol_bids.train.data` - lazy datasets over the derivatives and the official h5 files, EEG scaling;
* :mod:`~spec2vol_bids.train.splits` - LOSO / fixed split / no test set, with a validation subject;
* :mod:`~spec2vol_bids.train.schedule` - warm-up + cosine with hard restarts (paper and official variants);
* :mod:`~spec2vol_bids.train.loop` - training and evaluation of one model on one fold, exact resume;
* :mod:`~spec2vol_bids.train.checkpoint` - safe checkpoints (``load_checkpoint``, ``check_compatible``);
* :mod:`~spec2vol_bids.train.predict` - ``predict_windows`` for the BIDS-App and the napari plugin;
* :mod:`~spec2vol_bids.train.experiment` - folds x models, tables, report and ``model.ckpt``.
"""
