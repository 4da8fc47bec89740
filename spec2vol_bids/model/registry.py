"""Model registry: build a model by name (``build_model("spec2vol", **kwargs)``).

A builder is a callable returning an ``nn.Module`` whose ``config`` attribute holds the keyword arguments that
rebuild it (checkpoints store ``name`` and ``kwargs``). Register one with the :func:`register_model` decorator::

    @register_model("mean")
    def _build_mean(**kwargs):
        return MeanVolume(**kwargs)

Builders defined in :mod:`spec2vol_bids.model.baselines` (``e2fnet``, ``ridge``, ``mean``) register themselves
when that module is imported; :func:`build_model` and :func:`model_names` import it lazily, so a caller never
needs to import it first.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from torch import nn

from ..errors import UsageError

__all__ = ["MODELS", "register_model", "build_model", "model_names", "model_class_attribute"]

#: name -> builder(**kwargs) -> nn.Module
MODELS: dict[str, Callable[..., nn.Module]] = {}

#: modules imported on first look-up so that their ``@register_model`` decorators run
_PLUGIN_MODULES = ("spec2vol_bids.model.baselines", "spec2vol_bids.model.variants")
_loaded = False


def register_model(name: str, *, overwrite: bool = False):
    """Decorator registering ``builder`` under ``name``; a second registration of a name is an error
    unless ``overwrite``."""

    def deco(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in MODELS and MODELS[name] is not builder and not overwrite:
            raise ValueError(f"a model named {name!r} is already registered")
        MODELS[name] = builder
        return builder

    return deco


def _load_plugins() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in _PLUGIN_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:  # the module itself is absent (not one of its imports failing)
            if exc.name != module:
                raise


def model_names() -> list[str]:
    """Names of every registered model, sorted."""
    _load_plugins()
    return sorted(MODELS)


def build_model(name: str, **kwargs) -> nn.Module:
    """Build the model registered under ``name`` with ``kwargs``.

    Raises
    ------
    UsageError
        No model of that name is registered.
    """
    _load_plugins()
    if name not in MODELS:
        raise UsageError(f"unknown model {name!r}", hint=f"choose one of {', '.join(sorted(MODELS))}")
    return MODELS[name](**kwargs)


def model_class_attribute(name: str, attribute: str, default=None):
    """An attribute a model's builder declares about the models it builds (e.g. ``needs_mean_volume``), without
    building one; ``default`` when the builder does not declare it or no model of that name is registered."""
    _load_plugins()
    return getattr(MODELS.get(name), attribute, default)


@register_model("spec2vol")
def _build_spec2vol(preset: str | None = None, **kwargs) -> nn.Module:
    """Spec2VolCAMU-Net; ``preset="tiny"`` or ``"paper"`` starts from a named preset."""
    from .spec2vol import Spec2VolCAMUNet

    if preset is not None:
        return Spec2VolCAMUNet.from_preset(preset, **kwargs)
    return Spec2VolCAMUNet(**kwargs)
