"""QR codes: read the invite URL out of an uploaded group QR image, and draw poster QR codes."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import segno
import zxingcpp
from PIL import Image
from pydantic import ValidationError

from app.errors import InvalidInput, PayloadTooLarge, validation_details
from app.schemas import GroupCreate
from app.urls import UrlPolicy, check_target_url

MAX_UPLOAD_BYTES = 2 * 1024 * 1024
# A phone screenshot is ~3-12 MP; anything far beyond that is a bomb, not a group QR.
MAX_PIXELS = 40_000_000
_ERROR_LEVELS = frozenset("lmqh")
_ANY_HTTP_URL = UrlPolicy(allow_http=True)


def _sniff(data: bytes) -> str | None:
    """Pillow format name from the magic bytes, or None if not an accepted type."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def _load_grayscale(data: bytes, fmt: str) -> Image.Image:
    try:
        with Image.open(io.BytesIO(data), formats=[fmt]) as img:
            # open() only parses the header, so this check runs before any pixel is decoded.
            width, height = img.size
            if width * height > MAX_PIXELS:
                raise InvalidInput(
                    f"image is too large ({width}x{height} pixels)",
                    {"width": width, "height": height, "max_pixels": MAX_PIXELS},
                )
            img.load()
            if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
                # Transparent pixels are often stored as black: put them on white first.
                rgba = img.convert("RGBA")
                background = Image.new("RGBA", rgba.size, "white")
                background.alpha_composite(rgba)
                return background.convert("L")
            return img.convert("L")
    except Image.DecompressionBombError:
        raise InvalidInput("image is too large (decompression bomb)") from None
    # UnidentifiedImageError and truncated/corrupt data are OSErrors; some broken chunks and
    # headers surface as SyntaxError, ValueError or EOFError.
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InvalidInput(f"image is corrupt or truncated ({fmt.lower()})") from exc


def decode_qr_image(data: bytes, *, max_bytes: int = MAX_UPLOAD_BYTES) -> str:
    """The URL held by the first QR code in a PNG, JPEG or WebP image that carries one."""
    if len(data) > max_bytes:
        raise PayloadTooLarge(
            f"image is larger than {max_bytes} bytes", {"size": len(data), "max_bytes": max_bytes}
        )
    fmt = _sniff(data)
    if fmt is None:
        raise InvalidInput("unsupported image type: upload a PNG, JPEG or WebP image")
    gray = _load_grayscale(data, fmt)
    codes = zxingcpp.read_barcodes(gray, formats=zxingcpp.BarcodeFormats(zxingcpp.QRCode))
    if not codes:
        raise InvalidInput("no QR code found in the image")
    for code in codes:
        text = code.text.strip()
        try:
            check_target_url(text, _ANY_HTTP_URL)
        except InvalidInput:
            continue
        return text
    raise InvalidInput("the QR code does not hold a URL", {"payload": codes[0].text.strip()[:200]})


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


def qr_png(data: str, *, scale: int = 10, border: int = 4, error: str = "m") -> bytes:
    qr = _make(data, scale, border, error)
    out = io.BytesIO()
    qr.save(out, kind="png", scale=scale, border=border, dark="#000", light="#fff")
    return out.getvalue()


def qr_svg(data: str, *, scale: int = 10, border: int = 4, error: str = "m") -> bytes:
    qr = _make(data, scale, border, error)
    out = io.BytesIO()
    # omitsize gives the viewBox; width/height are added back so it also has an intrinsic size.
    # The white background keeps the code scannable on a dark poster.
    qr.save(
        out,
        kind="svg",
        scale=scale,
        border=border,
        dark="#000",
        light="#fff",
        omitsize=True,
        xmldecl=True,
    )
    width, height = qr.symbol_size(scale=scale, border=border)
    return out.getvalue().replace(b"<svg ", f'<svg width="{width}" height="{height}" '.encode(), 1)


WECHAT_CODE_LIFETIME = timedelta(days=7)


def group_from_image(image: bytes, fields: dict[str, Any]) -> GroupCreate:
    """A group from the image of its QR code (the API's upload and `livecode groups upload`).
    WeChat group codes expire 7 days after they are made: unless `expires_at` is given they get
    upload time + 7 days, and `page` mode (they only work when long-pressed inside WeChat)."""
    url = decode_qr_image(image)
    fields = dict(fields)
    if is_wechat_group_url(url):
        fields.setdefault("expires_at", (datetime.now(UTC) + WECHAT_CODE_LIFETIME).isoformat())
        fields.setdefault("mode", "page")
    try:
        return GroupCreate.model_validate({**fields, "url": url})
    except ValidationError as exc:
        raise InvalidInput("invalid group fields", validation_details(exc.errors())) from None
