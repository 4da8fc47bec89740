"""Compare two spec2vol-bids derivative folders (``make docker-test``: a run in the container vs one on the host).

Usage: ``python .ci/compare_derivatives.py OUT_A OUT_B``; exit 0 when they agree, 1 with one line per difference.

* the same files, except the run logs (``*/log/<run id>/``), whose names hold the date;
* NIfTI images: the same shape, affine and header codes, voxels within ``ATOL``;
* HDF5 files: the same datasets and attributes, arrays within ``ATOL``;
* JSON sidecars and TSV tables: equal, numbers within ``ATOL``, except the fields that name the software
  environment (versions, dates, hosts, durations) and absolute paths (the container's are not the host's);
* figures and HTML reports: present in both (their bytes hold dates and library versions).

The container installs the newest releases allowed by pyproject.toml, the host its own venv: NumPy/SciPy builds
may differ in the last bits, hence the tolerance.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

ATOL = 1e-4
#: JSON keys whose values describe the environment, not the science
VOLATILE = {"GeneratedBy", "spec2vol_version", "Versions", "versions", "DateTime", "Date", "started",
            "finished", "seconds", "Seconds", "Host", "host", "Command", "command", "Environment", "Device",
            "ModelPath", "WorkDir", "argv", "Container"}


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")
            if p.is_file() and "log" not in p.relative_to(root).parts[:-1]}


def _close(a, b, where: str, out: list[str]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k in VOLATILE:
                continue
            if k not in a or k not in b:
                out.append(f"{where}: key {k!r} only in {'B' if k not in a else 'A'}")
            else:
                _close(a[k], b[k], f"{where}.{k}", out)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            out.append(f"{where}: {len(a)} vs {len(b)} items")
        for i, (x, y) in enumerate(zip(a, b)):
            _close(x, y, f"{where}[{i}]", out)
    elif isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        if not (math.isclose(a, b, abs_tol=ATOL, rel_tol=ATOL) or (math.isnan(a) and math.isnan(b))):
            out.append(f"{where}: {a} vs {b}")
    elif isinstance(a, str) and isinstance(b, str):
        try:
            fa, fb = float(a), float(b)
        except ValueError:
            if a != b and not all(s.startswith(("/", "file:///")) for s in (a, b)):  # host vs container paths
                out.append(f"{where}: {a!r} vs {b!r}")
        else:
            _close(fa, fb, where, out)
    elif a != b:
        out.append(f"{where}: {a!r} vs {b!r}")


def compare(a: Path, b: Path) -> list[str]:
    import h5py
    import nibabel as nib
    import numpy as np

    out: list[str] = []
    fa, fb = _files(a), _files(b)
    out += [f"only in {a}: {n}" for n in sorted(fa - fb)]
    out += [f"only in {b}: {n}" for n in sorted(fb - fa)]
    n_checked = 0
    for name in sorted(fa & fb):
        pa, pb = a / name, b / name
        if name.endswith((".nii.gz", ".nii")):
            ia, ib = nib.load(pa), nib.load(pb)
            if ia.shape != ib.shape:
                out.append(f"{name}: shape {ia.shape} vs {ib.shape}")
                continue
            if not np.allclose(ia.affine, ib.affine, atol=1e-6):
                out.append(f"{name}: affines differ")
            if [int(x) for x in ia.header.get_sform(coded=True)[1:]] != [int(x) for x in
                                                                         ib.header.get_sform(coded=True)[1:]]:
                out.append(f"{name}: sform codes differ")
            da, db = np.asanyarray(ia.dataobj), np.asanyarray(ib.dataobj)
            err = float(np.nanmax(np.abs(da.astype(np.float64) - db))) if da.size else 0.0
            if err > ATOL:
                out.append(f"{name}: voxels differ by up to {err:.3g}")
        elif name.endswith(".h5"):
            with h5py.File(pa, "r") as ha, h5py.File(pb, "r") as hb:
                ka, kb = [], []
                ha.visit(ka.append)
                hb.visit(kb.append)
                if sorted(ka) != sorted(kb):
                    out.append(f"{name}: datasets {sorted(ka)} vs {sorted(kb)}")
                for k in ka:
                    if isinstance(ha[k], h5py.Dataset) and k in hb:
                        x, y = ha[k][()], hb[k][()]
                        if x.shape != y.shape or (x.dtype.kind in "fiub" and not np.allclose(x, y, atol=ATOL)):
                            out.append(f"{name}:{k} differs")
                attrs_a = {k: v for k, v in ha.attrs.items() if k not in VOLATILE}
                attrs_b = {k: v for k, v in hb.attrs.items() if k not in VOLATILE}
                if sorted(attrs_a) != sorted(attrs_b):
                    out.append(f"{name}: attributes {sorted(attrs_a)} vs {sorted(attrs_b)}")
        elif name.endswith(".json"):
            _close(json.loads(pa.read_text()), json.loads(pb.read_text()), name, out)
        elif name.endswith(".tsv"):
            ra = [line.split("\t") for line in pa.read_text().splitlines()]
            rb = [line.split("\t") for line in pb.read_text().splitlines()]
            _close(ra, rb, name, out)
        else:
            continue
        n_checked += 1
    if n_checked == 0:
        out.append("no derivative was compared")
    print(f"compared {n_checked} derivative files ({len(fa & fb)} files in both folders)")
    return out


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print(__doc__.splitlines()[2], file=sys.stderr)
        return 64
    a, b = Path(argv[0]), Path(argv[1])
    for p in (a, b):
        if not p.is_dir():
            print(f"compare_derivatives: error: {p} is not a folder", file=sys.stderr)
            return 66
    diffs = compare(a, b)
    for line in diffs:
        print(f"DIFF {line}")
    print("derivatives agree" if not diffs else f"{len(diffs)} difference(s)")
    return 0 if not diffs else 1


if __name__ == "__main__":
    sys.exit(main())
