"""Minimal HTML building blocks for single-file, portable reports (images embedded as base64 PNG)."""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

__all__ = ["Section", "esc", "img_tag", "table_html", "render_page"]

CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:0;color:#222;line-height:1.45}
nav{position:sticky;top:0;background:#243447;padding:.5em 1.5em;z-index:1}
nav a{color:#fff;margin-right:1.2em;text-decoration:none;font-size:.9em}
main{max-width:1100px;margin:0 auto;padding:1em 1.5em 3em}
h1{font-size:1.6em;margin-bottom:.2em} h2{border-bottom:2px solid #243447;padding-bottom:.2em;margin-top:2em}
h3{font-size:1.05em;margin-bottom:.3em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0 1em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left} th{background:#eef2f6}
td.num{text-align:right;font-variant-numeric:tabular-nums}
img{max-width:100%;height:auto;display:block;margin:.4em 0}
.warn{color:#8a4b00;background:#fff4e0;border-left:4px solid #e69500;padding:.3em .7em;margin:.3em 0}
.bad{color:#8b0000;font-weight:bold} .ok{color:#1b6e20}
.alert{color:#fff;background:#b00020;border-radius:4px;padding:.6em .9em;margin:.5em 0;font-size:1.02em}
.alert a{color:#fff;text-decoration:underline}
.nowrap{white-space:nowrap}
.meta{color:#666;font-size:.85em} pre{background:#f6f8fa;padding:.6em;overflow-x:auto;font-size:.8em}
.methods p{max-width:60em}
"""


@dataclass
class Section:
    """One report section: an anchor ``id``, a heading and an HTML body."""

    id: str
    title: str
    body: str
    subsections: list[str] = field(default_factory=list)


def esc(text) -> str:
    """HTML-escaped ``str(text)``."""
    return html.escape(str(text))


def img_tag(png: bytes, alt: str, *, link: str | None = None) -> str:
    """``<img>`` with the PNG embedded as a base64 data URI (optionally linking to the saved file)."""
    if not png.startswith(b"\x89PNG\r\n\x1a\n"):
        raise ValueError("img_tag expects PNG bytes")
    data = base64.b64encode(png).decode("ascii")
    tag = f'<img alt="{esc(alt)}" src="data:image/png;base64,{data}">'
    return f'<a href="{esc(link)}">{tag}</a>' if link else tag


def _cell(value) -> str:
    if isinstance(value, float):
        return f'<td class="num">{value:.4g}</td>'
    if isinstance(value, int) and not isinstance(value, bool):
        return f'<td class="num">{value}</td>'
    if isinstance(value, RawHTML):
        return f"<td>{value}</td>"
    return f"<td>{esc('n/a' if value is None else value)}</td>"


class RawHTML(str):
    """A string inserted into a table cell without escaping."""


def table_html(rows: Iterable[Sequence], header: Sequence[str]) -> str:
    """An HTML table (floats with 4 significant digits; ``None`` as ``n/a``)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "\n".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>"


def render_page(title: str, sections: Sequence[Section], *, subtitle: str = "") -> str:
    """A complete HTML5 document: navigation bar, title, then the sections in order."""
    nav = "".join(f'<a href="#{esc(s.id)}">{esc(s.title)}</a>' for s in sections)
    parts = [f'<section id="{esc(s.id)}"><h2>{esc(s.title)}</h2>\n{s.body}\n</section>' for s in sections]
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{esc(title)}</title>\n"
        f"<style>{CSS}</style>\n</head>\n<body>\n<nav>{nav}</nav>\n<main>\n<h1>{esc(title)}</h1>\n"
        f"<p class=\"meta\">{esc(subtitle)}</p>\n" + "\n".join(parts) + "\n</main>\n</body>\n</html>\n"
    )
