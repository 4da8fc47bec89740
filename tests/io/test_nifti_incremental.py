"""IncrementalNifti: a valid image after every volume, also when the writing process is killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from spec2vol_bids.io.nifti import IncrementalNifti

ROOT = Path(__file__).resolve().parents[2]


def test_each_append_gives_a_readable_image(tmp_path):
    affine = np.diag([3.0, 3.0, 4.0, 1.0])
    path = tmp_path / "x_desc-spec2vol_bold.nii"
    rng = np.random.default_rng(0)
    vols = [rng.standard_normal((6, 5, 4)).astype(np.float32) for _ in range(3)]
    with IncrementalNifti(path, affine, (6, 5, 4), repetition_time=2.0, xform_code=1) as out:
        for i, v in enumerate(vols):
            assert out.append(v, sidecar={"VolumeIndices": list(range(i + 1))}) == i + 1
            img = nib.load(path)
            assert img.shape == (6, 5, 4, i + 1)
            np.testing.assert_array_equal(np.asarray(img.dataobj), np.stack(vols[:i + 1], axis=-1))
            assert json.loads(path.with_suffix(".json").read_text())["VolumeIndices"] == list(range(i + 1))
    np.testing.assert_allclose(img.affine, affine)
    assert img.header.get_zooms() == (3.0, 3.0, 4.0, 2.0) and int(img.header["sform_code"]) == 1
    with pytest.raises(ValueError, match="differs"):
        IncrementalNifti(tmp_path / "y.nii", affine, (6, 5, 4)).append(vols[0][:, :, :2])
    with pytest.raises(ValueError, match="uncompressed"):
        IncrementalNifti(tmp_path / "y.nii.gz", affine, (6, 5, 4))


WRITER = textwrap.dedent("""
    import sys, time
    import numpy as np
    from spec2vol_bids.io.nifti import IncrementalNifti
    out = IncrementalNifti(sys.argv[1], np.eye(4), (64, 64, 30), repetition_time=2.0)
    k = 0
    while True:  # one volume of value k after another, until killed
        out.append(np.full((64, 64, 30), k, np.float32), sidecar={"VolumeIndices": list(range(k + 1))})
        print(k, flush=True)
        k += 1
        time.sleep(0.01 if k < 5 else 0.0)
""")


def test_image_written_so_far_is_readable_after_a_kill(tmp_path):
    path = tmp_path / "rt_desc-spec2vol_bold.nii"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 30
        done = -1
        while done < 8 and time.monotonic() < deadline:  # wait until several volumes are reported written
            line = proc.stdout.readline()
            if not line:
                break
            done = int(line)
        assert done >= 8, "the writer did not start"
        proc.send_signal(signal.SIGKILL)  # mid-write of a later volume, most likely
    finally:
        proc.kill()
        proc.wait(10)
    img = nib.load(path)
    data = np.asarray(img.dataobj)
    n = img.shape[3]
    assert n >= done + 1  # nothing reported written is lost
    np.testing.assert_array_equal(data, np.broadcast_to(np.arange(n, dtype=np.float32), (64, 64, 30, n)))
    side = json.loads(path.with_suffix(".json").read_text())
    assert len(side["VolumeIndices"]) in (n, n - 1)  # the sidecar follows the voxels (atomic replace)
