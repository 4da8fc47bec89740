"""Spec2VolCAMU-Net in PyTorch: the selective scan (with CPU and CUDA backends), SS2D/VM-UNet, the
MD-TF-CAE encoder, the full network and the model registry.

Nothing here imports ``mamba_ssm`` until the ``mamba_ssm`` scan backend is used.
"""

from .registry import MODELS, build_model, model_names, register_model
from .scan import available_backends, selective_scan
from .spec2vol import PRESETS, Spec2VolCAMUNet

__all__ = [
    "MODELS",
    "PRESETS",
    "Spec2VolCAMUNet",
    "available_backends",
    "build_model",
    "model_names",
    "register_model",
    "selective_scan",
]
