"""Render an HTML report in a real headless browser (Chromium) and say what the reader would see.

:func:`render` loads a report twice with ``chromium --headless``:

1. a copy of the page, next to it (so relative links resolve alike), with a probe script injected first in
   ``<head>``: it records every JavaScript error, failed resource load and ``console.error`` call, and, after the
   ``load`` event, every ``<img>`` that did not decode (``complete`` and ``naturalWidth > 0``), plus the page
   height; ``--dump-dom`` returns the DOM with those results as JSON in a ``<script id="report-probe">`` element;
2. the page itself, ``--screenshot`` at the full page height (capped), returned as a PNG path.

Chromium's own console lines (``--enable-logging=stderr``: ``CONSOLE(...)``) are collected as well. The flags are
those that work headless and offline as root in CI (no sandbox, no GPU, no network services, a fresh profile).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

#: names of the Chromium executable on Debian, Ubuntu and elsewhere
EXECUTABLES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--hide-scrollbars", "--mute-audio")
WIDTH = 1280
MAX_HEIGHT = 12000

_PROBE = """<script id="report-probe-code">
(function () {
  var probe = {errors: [], images: [], broken: [], height: 0, loaded: false};
  window.__probe = probe;
  window.addEventListener("error", function (e) {
    var t = e.target;
    if (t && t !== window && (t.src || t.href)) { probe.errors.push("failed to load " + (t.src || t.href).slice(0, 200)); }
    else { probe.errors.push("error: " + (e.message || e.type)); }
  }, true);
  window.addEventListener("unhandledrejection", function (e) { probe.errors.push("rejection: " + e.reason); });
  var original = console.error;
  console.error = function () { probe.errors.push("console.error: " + Array.prototype.join.call(arguments, " "));
                                return original.apply(console, arguments); };
  window.addEventListener("load", function () {
    var imgs = document.images;
    for (var i = 0; i < imgs.length; i++) {
      var img = imgs[i], ok = img.complete && img.naturalWidth > 0 && img.naturalHeight > 0;
      var info = {alt: img.alt, width: img.naturalWidth, height: img.naturalHeight};
      probe.images.push(info);
      if (!ok) { probe.broken.push(info); }
    }
    probe.height = Math.max(document.body.scrollHeight, document.documentElement.scrollHeight);
    probe.loaded = true;
    var out = document.createElement("script");
    out.type = "application/json"; out.id = "report-probe";
    out.textContent = JSON.stringify(probe);
    document.body.appendChild(out);
  });
})();
</script>"""


def find_chromium() -> str | None:
    """Path of a Chromium executable, or ``None``."""
    for name in EXECUTABLES:
        found = shutil.which(name)
        if found:
            return found
    return None


def chromium_available() -> bool:
    return find_chromium() is not None


@dataclass
class Rendered:
    """What Chromium saw: images (natural sizes), the broken ones, errors, the page height and a screenshot."""

    images: list[dict] = field(default_factory=list)
    broken: list[dict] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    height: int = 0
    screenshot: Path | None = None


def _run(args: list[str], profile: Path, timeout: float) -> subprocess.CompletedProcess:
    env = {**os.environ, "HOME": str(profile)}  # no writes into the user's home
    return subprocess.run([find_chromium(), *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                          text=True, timeout=timeout, env=env)


def render(html: str | os.PathLike, screenshot: str | os.PathLike | None = None, *,
           timeout: float = 120.0) -> Rendered:
    """Load ``html`` in headless Chromium (see the module docstring); optionally save a full-page screenshot."""
    html = Path(html).resolve()
    text = html.read_text(encoding="utf-8")
    head = re.search(r"<head[^>]*>", text)
    assert head is not None, f"{html.name} has no <head>"
    probe_page = html.with_name(f".probe-{html.name}")
    probe_page.write_text(text[:head.end()] + _PROBE + text[head.end():], encoding="utf-8")
    result = Rendered()
    with tempfile.TemporaryDirectory(prefix="chromium-") as tmp:
        try:
            proc = _run(["--enable-logging=stderr", "--v=0", "--virtual-time-budget=10000", "--dump-dom",
                         probe_page.as_uri()], Path(tmp) / "a", timeout)
        finally:
            probe_page.unlink()
        match = re.search(r'<script type="application/json" id="report-probe">(.*?)</script>', proc.stdout, re.S)
        assert match, f"Chromium did not finish loading {html.name} (exit {proc.returncode}): {proc.stderr[-2000:]}"
        probe = json.loads(match.group(1))
        result.images, result.broken, result.height = probe["images"], probe["broken"], int(probe["height"])
        console = [line for line in proc.stderr.splitlines() if "CONSOLE" in line and "report-probe" not in line]
        result.errors = list(probe["errors"]) + console
        if screenshot is not None:
            screenshot = Path(screenshot).resolve()
            height = max(600, min(MAX_HEIGHT, result.height))
            shot = _run([f"--window-size={WIDTH},{height}", f"--screenshot={screenshot}", html.as_uri()],
                        Path(tmp) / "b", timeout)
            assert screenshot.is_file(), f"no screenshot of {html.name}: {shot.stderr[-2000:]}"
            result.screenshot = screenshot
    return result


def assert_renders(html: str | os.PathLike, screenshot: str | os.PathLike, *, min_images: int) -> Rendered:
    """Render ``html``; assert that every figure decoded, that there were no errors, and that the screenshot is a
    real page (not blank). Returns what was seen."""
    import numpy as np
    from PIL import Image

    seen = render(html, screenshot)
    assert seen.errors == [], f"{Path(html).name}: {seen.errors}"
    assert seen.broken == [], f"{Path(html).name}: broken images {seen.broken}"
    assert len(seen.images) >= min_images, f"{Path(html).name}: {len(seen.images)} images"
    assert all(img["width"] > 100 and img["height"] > 100 for img in seen.images), seen.images
    pixels = np.asarray(Image.open(seen.screenshot).convert("L"), dtype=float)
    assert pixels.shape[1] == WIDTH and pixels.shape[0] >= 600
    assert pixels.std() > 10 and (pixels < 100).mean() > 0.005, "the screenshot is (almost) blank"
    return seen
