"""Importing spec2vol-bids changes nothing in the process; the command sets what its runs need (in a subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

_IMPORTS = ("spec2vol_bids", "spec2vol_bids.config", "spec2vol_bids.io", "spec2vol_bids.io.derivatives",
            "spec2vol_bids.bids.runs", "spec2vol_bids.pipeline.steps", "spec2vol_bids.reports.methods",
            "spec2vol_bids.cli.main", "spec2vol_bids.cli.bidsapp", "napari_spec2vol")


def _python(code: str, env: dict) -> dict:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture
def clean_env():
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)  # this checkout, as the tests see it
    return env


def test_import_leaves_the_environment_alone(clean_env):
    code = ("import json, os; before = dict(os.environ)\n"
            f"for name in {_IMPORTS!r}: __import__(name)\n"
            "after = dict(os.environ)\n"
            "print(json.dumps({k: [before.get(k), after.get(k)] for k in set(before) | set(after)\n"
            "                  if before.get(k) != after.get(k)}))")
    assert _python(code, clean_env) == {}


def test_the_command_sets_omp_wait_policy_unless_the_user_did(clean_env, tmp_path):
    code = ("import json, os; from spec2vol_bids.cli.main import main\n"
            f"rc = main([{str(tmp_path / 'missing')!r}, {str(tmp_path / 'out')!r}, 'participant'])\n"
            "print(json.dumps({'rc': rc, 'omp': os.environ.get('OMP_WAIT_POLICY')}))")
    assert _python(code, clean_env) == {"rc": 66, "omp": "PASSIVE"}
    assert _python(code, {**clean_env, "OMP_WAIT_POLICY": "ACTIVE"}) == {"rc": 66, "omp": "ACTIVE"}
