"""The npe2 manifest validates, its commands import, and the plugin keeps torch and Qt out of import time."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import napari_spec2vol

from ..tools import require_tool

MANIFEST = Path(napari_spec2vol.__file__).with_name("napari.yaml")


def test_npe2_validate_cli():
    npe2 = Path(sys.executable).with_name("npe2")
    result = subprocess.run([str(npe2), "validate", str(MANIFEST)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "valid" in result.stdout


def test_manifest_contributions_resolve():
    from npe2 import PluginManifest

    manifest = PluginManifest.from_file(MANIFEST)
    manifest.validate_imports()  # every python_name imports and exists
    contrib = manifest.contributions
    assert {r.command for r in contrib.readers} == {"spec2vol-bids.get_reader"}
    patterns = contrib.readers[0].filename_patterns
    # BIDS EEG recordings only; .h5 and NIfTI are claimed by content (napari_get_reader checks them)
    assert {"*_eeg.vhdr", "*_eeg.edf", "*_eeg.bdf", "*_eeg.set", "*.h5", "*.nii", "*.nii.gz"} == set(patterns)
    assert [w.display_name for w in contrib.widgets] == ["Spec2Vol prediction", "Spec2Vol real-time view"]
    assert [s.key for s in contrib.sample_data] == ["tiny-simulated-run", "tiny-simulated-eeg"]


def test_project_urls_for_the_napari_hub():
    import tomllib

    meta = tomllib.loads((Path(napari_spec2vol.__file__).parents[1] / "pyproject.toml").read_text())
    urls = {k.lower().replace(" ", ""): v for k, v in meta["project"]["urls"].items()}
    for key in ("bugtracker", "documentation", "sourcecode", "homepage"):
        assert urls.get(key, "").startswith("https://"), key
    assert urls["bugtracker"].endswith("/issues")


@pytest.mark.slow
def test_entry_point_registered_and_discovered():
    from importlib.metadata import entry_points

    eps = [ep for ep in entry_points(group="napari.manifest") if ep.value.startswith("napari_spec2vol")]
    require_tool(bool(eps), "the package with its entry points (editable install)")
    assert eps[0].value == "napari_spec2vol:napari.yaml"
    # npe2 finds the plugin through the entry point (the manifest name must be the distribution name)
    npe2 = Path(sys.executable).with_name("npe2")
    result = subprocess.run([str(npe2), "validate", "spec2vol-bids", "--imports"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    from npe2 import PluginManager

    pm = PluginManager()
    pm.discover(include_npe1=False)
    assert "spec2vol-bids" in pm._manifests
    assert pm.get_command("spec2vol-bids.make_widget").python_name == "napari_spec2vol._widget:Spec2VolWidget"


def test_no_qt_binding_in_core_or_napari_extra():
    import tomllib

    meta = tomllib.loads((Path(napari_spec2vol.__file__).parents[1] / "pyproject.toml").read_text())
    project = meta["project"]
    bindings = ("pyqt5", "pyqt6", "pyside2", "pyside6", "napari[all]", "napari[pyqt")
    for dep in project["dependencies"] + project["optional-dependencies"]["napari"]:
        assert not dep.lower().replace(" ", "").startswith(bindings), dep


@pytest.mark.slow
def test_reader_and_widget_modules_do_not_import_torch():
    code = ("import sys, napari_spec2vol._reader, napari_spec2vol._layers, napari_spec2vol._widget, "
            "napari_spec2vol._sample_data; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def _register():
    from npe2 import PluginManager, PluginManifest

    pm = PluginManager.instance()
    if "spec2vol-bids" not in pm._manifests:
        pm.register(PluginManifest.from_file(MANIFEST))


def test_napari_uses_the_contributions(make_napari_viewer, tmp_path):
    """napari opens a NIfTI through the manifest's reader and docks the manifest's widget."""
    import nibabel as nib
    import numpy as np

    from napari_spec2vol._widget import Spec2VolWidget

    _register()
    viewer = make_napari_viewer()
    path = tmp_path / "sub-01_task-rest_bold.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((4, 5, 3, 6), np.float32), np.diag([2.0, 2.0, 3.0, 1.0])), path)
    layers = viewer.open(str(path), plugin="spec2vol-bids")
    assert len(layers) == 1 and layers[0].data.shape == (6, 3, 5, 4)
    assert list(layers[0].scale[1:]) == [3.0, 2.0, 2.0]
    dock, widget = viewer.window.add_plugin_dock_widget("spec2vol-bids", "Spec2Vol prediction")
    assert isinstance(widget, Spec2VolWidget)
    assert getattr(widget.viewer, "__wrapped__", widget.viewer) is viewer  # napari passes a public-only proxy
