"""Building and arranging the comparison layers (measured, predicted, difference) in a napari viewer.

:func:`comparison_layers` turns arrays into napari ``LayerDataTuple`` s (no viewer needed, used by the sample data
contribution); :func:`show_comparison` puts them in a viewer: grid mode, one shared time slider, the contrast
limits of "measured" and "predicted" linked, anterior up.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

#: ``metadata["spec2vol_role"]`` of the layers this plugin manages (replaced when a run is shown again).
ROLES = ("measured", "predicted", "difference")


def comparison_layers(
    measured: np.ndarray,
    predicted: np.ndarray,
    *,
    scale: Sequence[float],
    translate: Sequence[float] = (0.0, 0.0, 0.0, 0.0),
    metadata: dict[str, Any] | None = None,
    prefix: str = "",
) -> list[tuple[np.ndarray, dict, str]]:
    """Layer-data tuples for a measured and a predicted 4-D series and their difference.

    Parameters
    ----------
    measured, predicted : ndarray, shape (t, z, y, x)
        The same volumes (napari axis order), one per predicted time point.
    scale, translate : sequence of 4 floats
        World geometry shared by the three layers: seconds per volume and the voxel size in mm; the time of the
        first volume and the world origin.
    metadata : dict, optional
        Extra metadata copied into every layer (paths, repetition time, metrics, ...).
    prefix : str
        Prepended to the layer names (e.g. the run name) so several runs can be compared.

    Returns
    -------
    layers : list of tuple
        ``[(measured, kwargs, "image"), (predicted, kwargs, "image"), (difference, kwargs, "image")]``; measured
        and predicted get identical contrast limits (robust range of the measured data), the difference a
        symmetric diverging colour scale.
    """
    measured = np.asarray(measured, dtype=np.float32)
    predicted = np.asarray(predicted, dtype=np.float32)
    if measured.shape != predicted.shape or measured.ndim != 4:
        raise ValueError(f"measured and predicted must be two (t, z, y, x) arrays of one shape, got "
                         f"{measured.shape} and {predicted.shape}")
    difference = predicted - measured
    lo, hi = _limits(measured)
    bound = float(np.nanpercentile(np.abs(difference), 99.5)) if difference.size else 1.0
    bound = bound if bound > 0 else 1.0
    meta = dict(metadata or {})
    common = {
        "scale": list(scale),
        "translate": list(translate),
        "axis_labels": ("time", "z", "y", "x"),
        "units": ("s", "mm", "mm", "mm"),
    }
    name = (prefix + " ") if prefix else ""
    return [
        (measured, {**common, "name": f"{name}measured", "colormap": "gray", "contrast_limits": (lo, hi),
                    "metadata": {**meta, "spec2vol_role": "measured"}}, "image"),
        (predicted, {**common, "name": f"{name}predicted", "colormap": "gray", "contrast_limits": (lo, hi),
                     "metadata": {**meta, "spec2vol_role": "predicted"}}, "image"),
        (difference, {**common, "name": f"{name}difference (predicted - measured)", "colormap": "bwr",
                      "contrast_limits": (-bound, bound), "metadata": {**meta, "spec2vol_role": "difference"}},
         "image"),
    ]


def _limits(data: np.ndarray) -> tuple[float, float]:
    finite = data[np.isfinite(data)]
    if finite.size == 0:
        return (0.0, 1.0)
    lo, hi = (float(v) for v in np.percentile(finite, [0.5, 99.5]))
    if not hi > lo:
        lo, hi = float(finite.min()), float(finite.max())
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


def viewer_camera(viewer):
    """The camera model: ``viewer.scene.camera`` (napari >= 0.9) or ``viewer.camera`` (older)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None and hasattr(scene, "camera") else viewer.camera


def viewer_grid(viewer):
    """The grid-mode model of a viewer: ``viewer.canvas.grid`` (napari >= 0.9) or ``viewer.grid`` (older)."""
    canvas = getattr(viewer, "canvas", None)
    return canvas.grid if canvas is not None and hasattr(canvas, "grid") else viewer.grid


def show_comparison(viewer, layer_data: Sequence[tuple[np.ndarray, dict, str]]) -> list:
    """Add comparison layers to ``viewer`` side by side with linked contrast and one time slider.

    Earlier comparison layers (``metadata["spec2vol_role"]`` set) are removed and other layers hidden so that the
    grid shows exactly the new measured, predicted and difference cells.

    Parameters
    ----------
    viewer : napari.Viewer
        The viewer.
    layer_data : sequence of tuple
        The output of :func:`comparison_layers`.

    Returns
    -------
    layers : list of napari.layers.Layer
        The added layers, in order.
    """
    for layer in list(viewer.layers):
        if layer.metadata.get("spec2vol_role") in ROLES:
            viewer.layers.remove(layer)
        else:
            layer.visible = False
    added = []
    for data, kwargs, layer_type in layer_data:
        added.append(getattr(viewer, f"add_{layer_type}")(data, **kwargs))
    by_role = {layer.metadata["spec2vol_role"]: layer for layer in added}
    if "measured" in by_role and "predicted" in by_role:
        viewer.layers.link_layers([by_role["measured"], by_role["predicted"]],
                                  ("contrast_limits", "colormap", "gamma"))
        viewer.layers.selection.active = by_role["predicted"]  # its controls set both (linked)
    grid = viewer_grid(viewer)
    grid.enabled = True
    # 1 x n for up to three cells, else two rows (fits the canvas next to the docked widget)
    grid.shape = (1, len(added)) if len(added) <= 3 else (2, -(-len(added) // 2))
    grid.stride = 1
    viewer.dims.ndisplay = 2
    # RAS+ data: show the y (anterior) axis pointing up, as radiology viewers do.
    viewer_camera(viewer).orientation2d = ("up", "right")
    if added:
        first = added[0]
        nd = viewer.dims.ndim
        # time slider on the first predicted volume, z slider on the middle slice
        viewer.dims.set_point(nd - 4, float(first.translate[0]))
        viewer.dims.set_point(nd - 3, float(first.translate[1] + first.scale[1] * (first.data.shape[1] // 2)))
    viewer.reset_view()
    return added
