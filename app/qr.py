"""QR codes: read the invite URL out of an uploaded group QR image, and draw poster QR codes."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import segno
from pydantic import ValidationError

from app import qrdecode
from app.errors import InvalidInput, PayloadTooLarge, validation_details
from app.qrdecode import MAX_UPLOAD_BYTES as MAX_UPLOAD_BYTES
from app.schemas import GroupCreate
from app.urls import UrlPolicy, check_target_url

_ERROR_LEVELS = frozenset("lmqh")
_ANY_HTTP_URL = UrlPolicy(allow_http=True)


def check_upload(data: bytes, max_bytes: int = MAX_UPLOAD_BYTES) -> None:
    """What can be refused without decoding: the size and the type (from the magic bytes)."""
    if len(data) > max_bytes:
        raise PayloadTooLarge(
            f"image is larger than {max_bytes} bytes", {"size": len(data), "max_bytes": max_bytes}
        )
    if qrdecode.sniff(data) is None:
        raise InvalidInput("unsupported image type: upload a PNG, JPEG or WebP image")


def first_url(texts: list[str]) -> str:
    """The first of the decoded QR texts that is a URL."""
    if not texts:
        raise InvalidInput("no QR code found in the image")
    for text in texts:
        try:
            check_target_url(text, _ANY_HTTP_URL)
        except InvalidInput:
            continue
        return text
    raise InvalidInput("the QR code does not hold a URL", {"payload": texts[0][:200]})


def decode_qr_image(data: bytes, *, max_bytes: int = MAX_UPLOAD_BYTES) -> str:
    """The URL held by the first QR code in a PNG, JPEG or WebP image that carries one, decoded
    in this process (the CLI; the API decodes in a child process: app/decoder.py)."""
    check_upload(data, max_bytes)
    try:
        texts = qrdecode.read_texts(data)
    except qrdecode.DecodeRefused as refused:
        raise InvalidInput(refused.message, refused.details) from None
    return first_url(texts)


def is_wechat_group_url(url: str) -> bool:
    try:
        parts = urlsplit(url.strip())
        host = (parts.hostname or "").rstrip(".")
    except ValueError:
        return False
    return (
        parts.scheme.lower() in ("http", "https")
        and host == "weixin.qq.com"
        and parts.path.startswith("/g/")
        and len(parts.path) > len("/g/")
    )


def _make(data: str, scale: int, border: int, error: str) -> segno.QRCode:
    if not isinstance(scale, int) or isinstance(scale, bool) or not 1 <= scale <= 50:
        raise InvalidInput("scale must be an integer from 1 to 50", {"field": "scale"})
    if not isinstance(border, int) or isinstance(border, bool) or not 0 <= border <= 20:
        raise InvalidInput("border must be an integer from 0 to 20", {"field": "border"})
    if not isinstance(error, str) or error.lower() not in _ERROR_LEVELS:
        raise InvalidInput("error must be one of l, m, q, h", {"field": "error"})
    if not data:
        raise InvalidInput("nothing to encode", {"field": "data"})
    try:
        # segno may raise the level above `error` when that costs no extra modules.
        return segno.make_qr(data, error=error.lower())
    except segno.DataOverflowError:
        raise InvalidInput("data is too long for a QR code", {"field": "data"}) from None


# What operators print from, by file suffix and API path: the format and its media type.
POSTER_FORMATS = {
    "png": "image/png",
    "svg": "image/svg+xml",
    "pdf": "application/pdf",
    "eps": "application/postscript",
}


def poster_qr(data: str, fmt: str, *, scale: int = 10, border: int = 4, error: str = "m") -> bytes:
    """The QR code of `data` as a PNG, SVG, PDF or EPS file (the API's qr.{fmt} and
    `livecode qr -o`). Dark modules on an opaque white background, so the code also scans on a
    dark poster. `scale` is pixels per module for PNG, user units (SVG) or points (PDF, EPS)."""
    fmt = fmt.lower()
    if fmt not in POSTER_FORMATS:
        raise InvalidInput(f"format must be one of {', '.join(POSTER_FORMATS)}",
                           {"field": "format"})
    qr = _make(data, scale, border, error)
    colours = {"scale": scale, "border": border, "dark": "#000", "light": "#fff"}
    if fmt == "eps":  # segno writes EPS as text (7-bit ASCII)
        text = io.StringIO()
        qr.save(text, kind="eps", **colours)
        return text.getvalue().encode("ascii")
    out = io.BytesIO()
    if fmt != "svg":
        qr.save(out, kind=fmt, **colours)
        return out.getvalue()
    # omitsize gives the viewBox; width/height are added back so it also has an intrinsic size.
    qr.save(out, kind="svg", omitsize=True, xmldecl=True, **colours)
    width, height = qr.symbol_size(scale=scale, border=border)
    return out.getvalue().replace(b"<svg ", f'<svg width="{width}" height="{height}" '.encode(), 1)


PRINT_FORMATS = ("pdf", "eps")


def poster_print(data: str, fmt: str, cm: float, *, border: int = 4, error: str = "m") -> bytes:
    """A PDF or EPS poster exactly `cm` wide, quiet zone included (the console's print sizes):
    the same code as poster_qr's, with a module of any size in points."""
    if fmt not in PRINT_FORMATS:
        raise InvalidInput(f"format must be one of {', '.join(PRINT_FORMATS)}",
                           {"field": "format"})
    if not 1 <= cm <= 200:
        raise InvalidInput("the width must be from 1 to 200 cm", {"field": "cm"})
    qr = _make(data, 1, border, error)
    modules = qr.symbol_size(scale=1, border=border)[0]
    colours = {"scale": cm / 2.54 * 72 / modules, "border": border, "dark": "#000",
               "light": "#fff"}
    if fmt == "eps":
        text = io.StringIO()
        qr.save(text, kind="eps", **colours)
        return text.getvalue().encode("ascii")
    out = io.BytesIO()
    qr.save(out, kind="pdf", **colours)
    return out.getvalue()


def qr_png(data: str, *, scale: int = 10, border: int = 4, error: str = "m") -> bytes:
    return poster_qr(data, "png", scale=scale, border=border, error=error)


def qr_svg(data: str, *, scale: int = 10, border: int = 4, error: str = "m") -> bytes:
    return poster_qr(data, "svg", scale=scale, border=border, error=error)


WECHAT_CODE_LIFETIME = timedelta(days=7)


def group_from_image(image: bytes, fields: dict[str, Any]) -> GroupCreate:
    """A group from the image of its QR code, decoded in this process (`livecode groups
    upload`)."""
    return group_from_url(decode_qr_image(image), fields)


def group_from_url(url: str, fields: dict[str, Any]) -> GroupCreate:
    """A group from the URL its QR code holds (the API's upload and `livecode groups upload`).
    WeChat group codes expire 7 days after they are made: unless `expires_at` is given they get
    upload time + 7 days, and `page` mode (they only work when long-pressed inside WeChat)."""
    fields = dict(fields)
    if is_wechat_group_url(url):
        fields.setdefault("expires_at", (datetime.now(UTC) + WECHAT_CODE_LIFETIME).isoformat())
        fields.setdefault("mode", "page")
    try:
        return GroupCreate.model_validate({**fields, "url": url})
    except ValidationError as exc:
        raise InvalidInput("invalid group fields", validation_details(exc.errors())) from None
