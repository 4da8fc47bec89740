"""Fixtures of the napari plugin tests: a private cache and one small sample (dataset + tiny model) per session."""

from __future__ import annotations

import os

import pytest

#: a faster, less trained sample than the interactive default (same code path)
TEST_SAMPLE = {"subjects": 2, "volumes": 36, "epochs": 10, "batch_size": 2}


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """Keep the plugin's cache (sample, default outputs) out of the user's ~/.cache."""
    old = os.environ.get("SPEC2VOL_CACHE")
    os.environ["SPEC2VOL_CACHE"] = str(tmp_path_factory.mktemp("spec2vol_cache"))
    yield
    if old is None:
        os.environ.pop("SPEC2VOL_CACHE", None)
    else:
        os.environ["SPEC2VOL_CACHE"] = old


@pytest.fixture(scope="session")
def napari_sample(_private_cache):
    """The sample of :func:`napari_spec2vol._sample_data.prepare_sample` built with :data:`TEST_SAMPLE`.

    Returns a namespace with ``paths`` (:class:`SamplePaths`) and ``stages`` (the progress reports of the build).
    """
    from types import SimpleNamespace

    from napari_spec2vol._sample_data import prepare_sample

    stages = []
    paths = prepare_sample(settings=TEST_SAMPLE, report=stages.append)
    return SimpleNamespace(paths=paths, stages=stages)


def dock_plugin_widget(make_napari_viewer, display_name: str):
    """A viewer and the plugin's widget ``display_name`` docked the way napari docks it (from the manifest, with a
    public-only proxy of the viewer), as a user opens it from the Plugins menu."""
    from pathlib import Path

    from npe2 import PluginManager, PluginManifest

    import napari_spec2vol

    pm = PluginManager.instance()
    if "spec2vol-bids" not in pm._manifests:
        pm.register(PluginManifest.from_file(Path(napari_spec2vol.__file__).with_name("napari.yaml")))
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("spec2vol-bids", display_name)
    return viewer, widget
