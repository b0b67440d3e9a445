"""The poster: the QR of the pool's public scan URL, one per channel, as PNG, SVG, PDF or EPS at
print sizes. A format is one entry of FORMATS."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from dataclasses import dataclass

import segno
from fastapi import APIRouter, Response
from PIL import Image

from app import links, qr
from app.console.nav import pool_tabs
from app.console.web import BASE, ConsoleRoute, ReadCtx
from app.deps import pool_id_or_404
from app.errors import NotFound
from app.store.keys import CHANNEL_RE

router = APIRouter(prefix=BASE + "/pools/{pool_id}", route_class=ConsoleRoute,
                   include_in_schema=False)

DPI = 300
BORDER = 4  # modules of quiet zone, as the API's default
ERROR = "m"
SIZES_CM = (5, 10, 20)
PREVIEW_SCALE = 5
MAX_CHANNELS = 20


@dataclass(frozen=True)
class PosterFormat:
    media_type: str
    draw: Callable[[str, int | None], bytes]  # (data, print width in cm or None) -> the file


def _png(data: str, cm: int | None) -> bytes:
    """At the print width: pixels per module for 300 dpi (at most qr's limit of 50), and the
    file's dpi set so that it prints exactly `cm` wide."""
    if cm is None:
        return qr.qr_png(data, scale=PREVIEW_SCALE, border=BORDER, error=ERROR)
    png = qr.qr_png(data, scale=scale_for(data, cm), border=BORDER, error=ERROR)
    with Image.open(io.BytesIO(png)) as image:
        dpi = image.width / (cm / 2.54)
        out = io.BytesIO()
        image.save(out, format="PNG", dpi=(dpi, dpi))
    return out.getvalue()


def _svg(data: str, cm: int | None) -> bytes:
    """A vector drawing that says its own print size (cm) and scales without loss."""
    svg = qr.qr_svg(data, scale=1 if cm else PREVIEW_SCALE, border=BORDER, error=ERROR)
    if cm is None:
        return svg
    return re.sub(rb'^(.*?<svg) width="\d+" height="\d+"', rb'\1' + (
        f' width="{cm}cm" height="{cm}cm"'.encode()), svg, count=1, flags=re.S)


def _vector(fmt: str) -> Callable[[str, int | None], bytes]:
    """PDF and EPS, exactly `cm` wide (the preview size: 5 cm)."""
    def draw(data: str, cm: int | None) -> bytes:
        return qr.poster_print(data, fmt, cm or SIZES_CM[0], border=BORDER, error=ERROR)
    return draw


FORMATS: dict[str, PosterFormat] = {
    "png": PosterFormat("image/png", _png),
    "svg": PosterFormat("image/svg+xml", _svg),
    "pdf": PosterFormat(qr.POSTER_FORMATS["pdf"], _vector("pdf")),
    "eps": PosterFormat(qr.POSTER_FORMATS["eps"], _vector("eps")),
}


def scale_for(data: str, cm: int) -> int:
    """Pixels per module so the code, quiet zone included, is about `cm` wide at 300 dpi."""
    modules = segno.make_qr(data, error=ERROR).symbol_size(scale=1, border=BORDER)[0]
    return max(1, min(50, round(cm / 2.54 * DPI / modules)))


def parse_channels(raw: str) -> tuple[list[str], list[str]]:
    """The channel names typed by the operator (commas, spaces or lines between them): the
    valid ones in order without repeats, and the refused ones."""
    good: list[str] = []
    bad: list[str] = []
    for name in raw.replace(",", " ").replace("，", " ").split():
        if CHANNEL_RE.match(name):
            if name not in good:
                good.append(name)
        else:
            bad.append(name[:40])
    return good[:MAX_CHANNELS], bad


@router.get("/poster")
async def poster_page(ctx: ReadCtx, pool_id: str, channels: str = "") -> Response:
    pool = await ctx.rt.store.get_pool(pool_id_or_404(pool_id))
    good, bad = parse_channels(channels[:2000])
    settings = ctx.rt.settings
    base = links.public_base(settings)
    return ctx.page(
        "poster.html", active="pool", tab="poster", pool=pool, tabs=pool_tabs(pool.id),
        codes=[("", links.scan_url(settings, pool.id))]
        + [(ch, links.scan_url(settings, pool.id, ch)) for ch in good],
        channels=" ".join(good), bad_channels=bad,
        loopback=links.unreachable_reason(base) is not None, base=base,
        sizes=SIZES_CM, formats=list(FORMATS), dpi=DPI, max_channels=MAX_CHANNELS,
    )


@router.get("/poster.{fmt}")
async def poster_file(
    ctx: ReadCtx, pool_id: str, fmt: str, size: str = "10", ch: str = ""
) -> Response:
    """`size`: a print width in cm (5, 10, 20), or `preview` for the page's own image."""
    pool = await ctx.rt.store.get_pool(pool_id_or_404(pool_id))
    kind = FORMATS.get(fmt)
    if kind is None or (ch and not CHANNEL_RE.match(ch)):
        raise NotFound("no such poster")
    data = links.scan_url(ctx.rt.settings, pool.id, ch)
    headers = {"Cache-Control": "no-store"}
    cm: int | None = None
    if size.isdigit() and int(size) in SIZES_CM:
        cm = int(size)
        name = f"{pool.id}{'-' + ch if ch else ''}-{size}cm.{fmt}"
        headers["Content-Disposition"] = f'attachment; filename="{name}"'
    elif size != "preview":
        raise NotFound("no such poster size")
    return Response(kind.draw(data, cm), media_type=kind.media_type, headers=headers)
