"""The import graph respects the layers of CONTRIBUTING.md: no package imports one above it.

Every module of ``spec2vol_bids`` and ``napari_spec2vol`` is parsed (not imported) and every import is checked,
the lazy ones inside functions included: a package may import its own modules, the packages of lower layers and
the shared base (``config``, ``errors``, ``utils``); two packages of the same layer never import each other.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "spec2vol_bids"
#: top to bottom; a package may import only the layers below its own (and its own modules)
LAYERS = (
    ("__main__", "demo"),
    ("cli",),
    ("workflows",),
    ("interfaces", "napari_spec2vol"),
    ("pipeline", "simulate"),
    ("reports",),
    ("train",),
    ("bids",),
    ("io",),
    ("preproc", "model"),
    ("config", "errors", "utils", "_version", "__init__"),  # the shared base: they may import each other
)
RANK = {name: len(LAYERS) - i for i, layer in enumerate(LAYERS) for name in layer}
BASE = set(LAYERS[-1])
#: third-party packages a part must never import (the science stays free of the glue and the GUI)
FORBIDDEN_THIRD_PARTY = {
    "preproc": {"nipype", "napari", "qtpy", "magicgui", "bids", "torch"},
    "model": {"nipype", "napari", "qtpy", "magicgui", "bids", "mne", "nibabel", "h5py"},
    "io": {"nipype", "napari", "qtpy", "magicgui", "torch"},
    "*": {"napari", "qtpy", "magicgui", "napari_spec2vol"},  # anything in spec2vol_bids
}
#: imports that break the rule on purpose, as (importing module, imported module): none
ALLOWED: set[tuple[str, str]] = set()


def _modules():
    for top in (PACKAGE, "napari_spec2vol"):
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = list(rel.parts)
            is_pkg = parts[-1] == "__init__"
            if is_pkg:
                parts = parts[:-1]
            yield ".".join(parts), path, is_pkg


def _imports(module: str, path: Path, is_pkg: bool):
    """Absolute names of every module imported anywhere in ``path`` (``from x import y`` gives ``x.y`` too)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if is_pkg else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            yield node.lineno, target
            for alias in node.names:
                yield node.lineno, f"{target}.{alias.name}"


def _part(module: str) -> str | None:
    """The layer key of a module of this project (``spec2vol_bids.io.names`` -> ``io``), None for others."""
    parts = module.split(".")
    if parts[0] == "napari_spec2vol":
        return "napari_spec2vol"
    if parts[0] != PACKAGE:
        return None
    return parts[1] if len(parts) > 1 else "__init__"


def _violations():
    found = []
    for module, path, is_pkg in _modules():
        src = _part(module)
        for line, target in _imports(module, path, is_pkg):
            dst = _part(target)
            where = f"{path.relative_to(ROOT)}:{line}: {module} imports {target}"
            if dst is None:
                third = target.split(".")[0]
                if src != "napari_spec2vol" and third in FORBIDDEN_THIRD_PARTY["*"] | FORBIDDEN_THIRD_PARTY.get(src, set()):
                    found.append(where + " (third-party package not allowed here)")
                continue
            if dst not in RANK:  # a name imported from a module (``from .x import func``), not a module
                dst = _part(target.rpartition(".")[0])
            if dst == src or (src in BASE and dst in BASE) or (module, target) in ALLOWED:
                continue
            if dst == "napari_spec2vol" and src != "napari_spec2vol":
                found.append(where + " (spec2vol_bids never imports the napari plugin)")
            elif RANK[dst] >= RANK[src]:
                found.append(where + f" (layer of {dst} is not below {src})")
    return found


def test_every_part_has_a_layer():
    parts = {_part(m) for m, _, _ in _modules()}
    assert parts <= set(RANK), f"add {sorted(parts - set(RANK))} to LAYERS (and to CONTRIBUTING.md)"


def test_no_package_imports_one_above_it():
    violations = _violations()
    assert not violations, "imports against the layers (CONTRIBUTING.md):\n" + "\n".join(violations)


@pytest.mark.parametrize("source, expected", [
    ("from ..train.metrics import ssim\n", "train"),
    ("import spec2vol_bids.cli.main\n", "cli"),
])
def test_the_checker_sees_lazy_and_relative_imports(tmp_path, source, expected):
    path = tmp_path / "x.py"
    path.write_text("def f():\n    " + source)
    targets = {_part(t) for _, t in _imports("spec2vol_bids.io.x", path, False)}
    assert expected in targets
