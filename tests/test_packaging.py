"""Release hygiene: one version, sdist and wheel build, and the wheel installs into a fresh venv and runs.

The build uses ``--no-isolation`` (the project venv's setuptools; no network needed). The fresh venv gets the
wheel with ``--no-deps``; the heavy dependencies (numpy, nipype...) are borrowed from the running interpreter's
site-packages through a ``.pth`` file appended after the venv's own, so the installed wheel, not the source tree
or the editable install, is what runs.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # builds and installs a wheel: the full suite only

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
IGNORE = shutil.ignore_patterns(".git", ".venv", "build", "dist", "_build", "generated", "work", "demo_out",
                                "__pycache__", "*.egg-info", ".pytest_cache", ".ruff_cache")


def _version() -> str:
    text = (ROOT / "spec2vol_bids" / "_version.py").read_text()
    return re.search(r"__version__\s*=\s*['\"]([^'\"]+)['\"]", text).group(1)


def test_version_is_defined_once():
    version = _version()
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in pyproject["project"], "the version belongs in spec2vol_bids/_version.py"
    assert "version" in pyproject["project"]["dynamic"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "spec2vol_bids._version.__version__"}
    cff = (ROOT / "CITATION.cff").read_text()
    assert re.search(rf"^version:\s*['\"]?{re.escape(version)}['\"]?\s*$", cff, flags=re.M), \
        "CITATION.cff's version differs from spec2vol_bids/_version.py"
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert f"## [{version}]" in changelog or "## [Unreleased]" in changelog, "CHANGELOG.md has no section for it"


@pytest.fixture(scope="module")
def dists(tmp_path_factory):
    """sdist and wheel built from a copy of the source tree (the working tree gets no build/ folder)."""
    tmp = tmp_path_factory.mktemp("build")
    src = tmp / "src"
    shutil.copytree(ROOT, src, ignore=IGNORE)
    out = tmp / "dist"
    proc = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(src)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"python -m build failed\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    wheels, sdists = sorted(out.glob("*.whl")), sorted(out.glob("*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, sorted(p.name for p in out.iterdir())
    return {"wheel": wheels[0], "sdist": sdists[0], "tmp": tmp}


def test_wheel_contents(dists):
    version = _version()
    wheel = dists["wheel"]
    assert wheel.name == f"spec2vol_bids-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        info = f"spec2vol_bids-{version}.dist-info"
        entry_points = zf.read(f"{info}/entry_points.txt").decode()
        metadata = zf.read(f"{info}/METADATA").decode()
    for name in ("spec2vol_bids/__init__.py", "spec2vol_bids/cli/main.py", "spec2vol_bids/workflows/base.py",
                 "spec2vol_bids/model/scan.py", "napari_spec2vol/__init__.py", "napari_spec2vol/napari.yaml",
                 "napari_spec2vol/data/sample_run.npz", f"{info}/licenses/LICENSE"):
        assert name in names, name
    assert not any(n.startswith(("tests/", "examples/", "docs/", "benchmarks/")) for n in names)
    assert re.search(r"^spec2vol_bids = spec2vol_bids\.cli\.main:main$", entry_points, flags=re.M)
    assert re.search(r"^spec2vol-bids = spec2vol_bids\.cli\.main:main$", entry_points, flags=re.M)
    assert "[napari.manifest]" in entry_points and "napari_spec2vol:napari.yaml" in entry_points
    assert f"Version: {version}" in metadata and "License-Expression: Apache-2.0" in metadata
    assert "Provides-Extra: cuda" in metadata and "Provides-Extra: napari" in metadata
    # diffusers only with the e2fnet extra; the napari hub's links
    assert "Provides-Extra: e2fnet" in metadata and 'Requires-Dist: diffusers>=0.30; extra == "e2fnet"' in metadata
    assert not re.search(r"^Requires-Dist: diffusers[^;]*$", metadata, flags=re.M)
    # mne-lsl (real-time mode) only with the realtime extra (and the test extra, whose tests use it)
    assert 'Requires-Dist: mne-lsl>=1.14; extra == "realtime"' in metadata
    assert not re.search(r"^Requires-Dist: mne-lsl[^;]*$", metadata, flags=re.M)
    assert "Project-URL: Bug Tracker, https://github.com/spec2vol-bids/spec2vol-bids/issues" in metadata


def test_sdist_contents(dists):
    version = _version()
    with tarfile.open(dists["sdist"]) as tf:
        names = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
    for name in ("LICENSE", "README.md", "CHANGELOG.md", "CITATION.cff", "pyproject.toml",
                 "spec2vol_bids/_version.py", "napari_spec2vol/napari.yaml", "examples/embed_workflow.py",
                 "docs/conf.py", "docs/index.rst"):
        assert name in names, name
    assert not any(n.startswith(("docs/_build/", ".venv/")) for n in names)
    assert dists["sdist"].name == f"spec2vol_bids-{version}.tar.gz"


def test_wheel_installs_in_fresh_venv_and_runs(dists, tmp_path):
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    py = env_dir / ("Scripts" if os.name == "nt" else "bin") / "python"
    site = Path(subprocess.check_output([str(py), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                        text=True).strip())
    # dependencies (not this package) from the test interpreter's environment, after the venv's own site-packages
    (site / "zz_borrowed_dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INDEX="1", NIPYPE_NO_ET="1")
    pip = subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(dists["wheel"])],
                         capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert pip.returncode == 0, pip.stderr[-3000:]

    where = subprocess.run([str(py), "-c", "import spec2vol_bids, napari_spec2vol; "
                                           "print(spec2vol_bids.__file__); print(napari_spec2vol.__file__)"],
                           capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert where.returncode == 0, where.stderr[-3000:]
    for line in where.stdout.split():
        assert Path(line).is_relative_to(site), f"imported from {line}, not from the fresh venv"

    bindir = py.parent
    for script in ("spec2vol_bids", "spec2vol-bids"):
        ver = subprocess.run([str(bindir / script), "--version"], capture_output=True, text=True, env=env,
                             cwd=tmp_path, timeout=120)
        assert ver.returncode == 0, ver.stderr[-3000:]
        assert _version() in ver.stdout + ver.stderr
    helped = subprocess.run([str(bindir / "spec2vol_bids"), "--help"], capture_output=True, text=True, env=env,
                            cwd=tmp_path, timeout=120)
    assert helped.returncode == 0, helped.stderr[-3000:]
    assert "participant" in helped.stdout and "--participant-label" in helped.stdout
    for sub in ("train", "simulate"):
        sub_help = subprocess.run([str(bindir / "spec2vol_bids"), sub, "--help"], capture_output=True, text=True,
                                  env=env, cwd=tmp_path, timeout=120)
        assert sub_help.returncode == 0, sub_help.stderr[-3000:]
