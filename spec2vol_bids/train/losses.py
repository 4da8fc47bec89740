"""Training losses.

* ``ssim+mse``: the paper's ``0.5 (1 - SSIM) + 0.5 MSE``. SSIM is the published 2-D slices-as-channels definition
  of :mod:`spec2vol_bids.train.metrics` (torchmetrics >= 1.4.3, ``data_range=1``) averaged over the batch; MSE is
  the mean over all voxels (``torch.nn.MSELoss``).
* ``demeaned-mse`` (:func:`demeaned_mse_loss`): MSE between the predicted and the measured deviation of each
  volume from its run's mean volume, divided by the variance of those deviations in the training data. A run's
  mean volume is the subject's anatomy, which the EEG cannot predict and which dominates both SSIM and plain MSE;
  what is left is the BOLD dynamics. The value reads as the fraction of the dynamic variance left unexplained
  (1.0 for the training-mean volume).
"""

from __future__ import annotations

import torch
from torch import nn

from .metrics import ssim_per_sample

__all__ = ["SSIMMSELoss", "ssim_mse_loss", "demeaned_mse_loss"]


def ssim_mse_loss(
    preds: torch.Tensor,
    target: torch.Tensor,
    *,
    ssim_weight: float = 0.5,
    mse_weight: float = 0.5,
    data_range: float = 1.0,
    crop_border: bool = False,
) -> torch.Tensor:
    """Scalar loss ``ssim_weight * (1 - SSIM) + mse_weight * MSE``.

    Parameters
    ----------
    preds, target : Tensor, shape (B, D, H, W)
        Predicted and measured volumes, slices as channels.
    ssim_weight, mse_weight : float
        0.5 and 0.5 in the paper.
    data_range, crop_border
        Passed to :func:`spec2vol_bids.train.metrics.ssim_map`.
    """
    s = ssim_per_sample(preds, target, data_range=data_range, crop_border=crop_border).mean()
    mse = torch.mean((preds - target.to(preds.dtype)) ** 2)
    return ssim_weight * (1.0 - s) + mse_weight * mse


class SSIMMSELoss(nn.Module):
    """Module form of :func:`ssim_mse_loss` (the paper's ``0.5 (1 - SSIM) + 0.5 MSE``)."""

    def __init__(self, ssim_weight: float = 0.5, mse_weight: float = 0.5, *, data_range: float = 1.0,
                 crop_border: bool = False):
        super().__init__()
        self.ssim_weight = float(ssim_weight)
        self.mse_weight = float(mse_weight)
        self.data_range = float(data_range)
        self.crop_border = bool(crop_border)

    def forward(self, preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return ssim_mse_loss(preds, target, ssim_weight=self.ssim_weight, mse_weight=self.mse_weight,
                             data_range=self.data_range, crop_border=self.crop_border)

    def extra_repr(self) -> str:
        return f"ssim_weight={self.ssim_weight}, mse_weight={self.mse_weight}, data_range={self.data_range}"


#: what each ``--loss`` is, in words (metrics.json, reports)
LOSS_DEFINITIONS = {
    "ssim+mse": "0.5 (1 - SSIM) + 0.5 MSE",
    "demeaned-mse": "MSE of each volume's deviation from its run's mean volume, over the targets' dynamic variance",
}


def demeaned_mse_loss(preds: torch.Tensor, target: torch.Tensor, run_mean: torch.Tensor, mean_volume: torch.Tensor,
                      *, variance: float = 1.0) -> torch.Tensor:
    """Scalar ``mean((preds - mean_volume - (target - run_mean))**2) / variance``.

    Parameters
    ----------
    preds, target : Tensor, shape (B, D, H, W)
        Predicted and measured volumes.
    run_mean : Tensor, shape (B, D, H, W) or (D, H, W)
        The mean volume of the run each target belongs to.
    mean_volume : Tensor, shape (D, H, W)
        The training-mean volume the prediction is a deviation from (the models of
        :mod:`spec2vol_bids.model.variants` add it to their output).
    variance : float
        Mean squared deviation of the training targets from their run means (the loss of predicting no deviation).
    """
    deviation = target.to(preds.dtype) - run_mean
    return torch.mean((preds - mean_volume - deviation) ** 2) / float(variance)
