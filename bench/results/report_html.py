"""HTML building blocks of `bench report`: escaping, tables, data URIs, thumbnails and the page itself.

Everything the page needs is inside the one file: the style sheet is inline, images are ``data:`` URIs, and a
Content-Security-Policy meta tag forbids every other load (no script, no font, no network), so the file works offline
and can be mailed or attached to a pull request as it is. There is no JavaScript.
"""

from __future__ import annotations

import base64
import html
import io
import math
import re
from pathlib import Path
from typing import Any, Iterable

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
THUMB_PX = 256
BACKGROUND = "#ffffff"

STYLE = f"""
body {{ background: {BACKGROUND}; color: #1d1d1f; margin: 0 auto; max-width: 1280px; padding: 16px 24px 48px;
       font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }}
h1 {{ font-size: 24px; margin: 8px 0 4px; }}
h2 {{ font-size: 20px; border-bottom: 2px solid #d0d7de; padding-bottom: 4px; margin-top: 36px; }}
h3 {{ font-size: 16px; margin: 24px 0 8px; }}
h4 {{ font-size: 14px; margin: 14px 0 6px; color: #444; }}
nav a {{ margin-right: 14px; }}
a {{ color: #0b57d0; }}
table {{ border-collapse: collapse; margin: 6px 0 12px; font-size: 13px; }}
th, td {{ border: 1px solid #d0d7de; padding: 3px 8px; text-align: left; vertical-align: top; }}
th {{ background: #f3f5f8; }}
td.num {{ text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }}
.note {{ color: #57606a; font-size: 13px; }}
.warn {{ color: #9a3412; }}
.small {{ font-size: 11px; color: #57606a; }}
.row {{ display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; }}
.card {{ border: 1px solid #d0d7de; border-radius: 6px; padding: 8px; margin: 6px 0; }}
.caption {{ display: flex; gap: 12px; align-items: flex-start; }}
.caption img {{ flex: none; }}
img.thumb {{ max-width: {THUMB_PX}px; max-height: {THUMB_PX}px; }}
img.plot {{ max-width: 100%; }}
figure {{ margin: 0; }}
figcaption {{ font-size: 12px; color: #444; max-width: {THUMB_PX}px; }}
mark.hall {{ background: #fecaca; color: #7f1d1d; padding: 0 2px; border-radius: 3px; }}
mark.ok {{ background: #bbf7d0; color: #14532d; padding: 0 2px; border-radius: 3px; }}
code {{ font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 12px; }}
"""


def esc(value: Any) -> str:
    """``value`` as HTML text (quotes escaped too, so it is safe inside attributes)."""
    return html.escape("" if value is None else str(value), quote=True)


def slug(*parts: str) -> str:
    """An HTML id from names: letters, digits, ``-`` and ``_`` only (``pope--pope_mini_random``)."""
    return "--".join(re.sub(r"[^A-Za-z0-9_-]+", "-", str(p)).strip("-") or "x" for p in parts)


def number(value: Any) -> str:
    """A number for people: ``n/a`` when missing or not finite, 1 decimal from 1 up, else 3 significant digits."""
    if value is None or isinstance(value, bool):
        return "n/a" if value is None else str(value)
    try:
        x = float(value)
    except (TypeError, ValueError):
        return esc(value)
    if not math.isfinite(x):
        return "n/a"
    if x == 0:
        return "0"
    return f"{x:.1f}" if abs(x) >= 1 else f"{x:.3g}"


def table(header: Iterable[str], rows: Iterable[Iterable[str]], numeric_from: int | None = None,
          cls: str | None = None) -> str:
    """A table of already-escaped cells; columns from ``numeric_from`` on are right-aligned numbers."""
    head = "".join(f"<th>{h}</th>" for h in header)
    body = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            attr = ' class="num"' if numeric_from is not None and i >= numeric_from else ""
            cells.append(f"<td{attr}>{cell}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    klass = f' class="{cls}"' if cls else ""
    return f"<table{klass}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def note(text: str, warn: bool = False) -> str:
    return f'<p class="note{" warn" if warn else ""}">{esc(text)}</p>'


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def img(uri: str, alt: str, cls: str = "thumb") -> str:
    return f'<img class="{cls}" src="{uri}" alt="{esc(alt)}">'


def thumbnail_uri(source: Path | str | bytes, max_px: int = THUMB_PX) -> str | None:
    """A thumbnail (longest side ``max_px``) of an image file or PNG/JPEG bytes, as a data URI; None when it cannot
    be read. Photos and saliency overlays become JPEGs (a quarter of a PNG's size); a PNG already within ``max_px``
    and smaller than its JPEG is kept as it is."""
    from PIL import Image, UnidentifiedImageError

    try:
        raw = source if isinstance(source, bytes) else Path(source).read_bytes()
        with Image.open(io.BytesIO(raw)) as image:
            small_png = image.format == "PNG" and max(image.size) <= max_px
            picture = image.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError):
        return None
    picture.thumbnail((max_px, max_px))
    out = io.BytesIO()
    picture.save(out, format="JPEG", quality=80)
    if small_png and len(raw) <= out.tell():
        return data_uri(raw, "image/png")
    return data_uri(out.getvalue(), "image/jpeg")


_INLINE = [(re.compile(r"`([^`]+)`"), r"<code>\1</code>"), (re.compile(r"\*\*([^*]+)\*\*"), r"<b>\1</b>")]


def _inline(text: str) -> str:
    out = esc(text.strip())
    for pattern, repl in _INLINE:
        out = pattern.sub(repl, out)
    return out


def _cells(line: str) -> list[str]:
    inner = line.strip()
    inner = inner[1:] if inner.startswith("|") else inner
    inner = inner[:-1] if inner.endswith("|") and not inner.endswith("\\|") else inner
    return [c.replace("\\|", "|") for c in re.split(r"(?<!\\)\|", inner)]


def markdown_html(text: str) -> str:
    """The Markdown `bench compare` prints (pipe tables, headings, paragraphs, `code`, **bold**) as HTML."""
    out: list[str] = []
    block: list[str] = []

    def flush() -> None:
        if not block:
            return
        rows = [_cells(line) for line in block if not re.fullmatch(r"\|?[\s:|-]+\|?", line.strip())]
        if rows:
            out.append(table([_inline(c) for c in rows[0]], [[_inline(c) for c in r] for r in rows[1:]]))
        block.clear()

    for line in text.splitlines():
        if line.strip().startswith("|"):
            block.append(line)
            continue
        flush()
        stripped = line.strip()
        if not stripped:
            continue
        heading = re.match(r"(#{1,6})\s+(.*)", stripped)
        if heading:
            out.append(f"<h4>{_inline(heading.group(2))}</h4>")
        else:
            out.append(f"<p>{_inline(stripped.lstrip('-* ') if stripped[:2] in ('- ', '* ') else stripped)}</p>")
    flush()
    return "\n".join(out)


def page(title: str, body: str) -> str:
    """The whole document: CSP first in <head>, inline style, no script, an empty data: favicon (no request)."""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        "<link rel=\"icon\" href=\"data:,\">\n"
        f"<title>{esc(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )
