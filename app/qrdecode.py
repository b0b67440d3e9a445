"""Reading QR codes out of uploaded images, at a bounded cost in memory.

A decoded image costs its pixel count times the bytes per pixel of its mode (Pillow keeps RGB
and RGBA, also LA and PA, at 4 bytes a pixel; WebP's decoder holds the canvas, a copy and the
image while it loads: ~16 bytes a pixel). So, before any pixel is decoded:
- JPEG is decoded by libjpeg's scaler (`draft`) at 1/2, 1/4 or 1/8 of its size, straight to
  grayscale, until it is at most DECODE_PIXELS: a 50 MP photo costs what a 3 MP one does. A
  progressive one is refused past MAX_JPEG_COEFFICIENT_BYTES (libjpeg holds all its
  coefficients, whatever the scale).
- PNG and WebP cannot be decoded at a smaller size: MAX_PIXELS holds any phone or tablet
  screenshot (the largest, 1644x3840, is 6.3 MP; an iPhone's 1290x2796, 3.6 MP) and keeps one
  decode's peak well under 150 MiB (tests/test_hardening_uploads.py measures each at its limit).
- Transparency is flattened onto white in grayscale (1 byte a pixel), never by compositing
  RGBA copies at full size, and the decoded image is let go before the QR reader runs.

This module imports only Pillow and zxing-cpp: the API runs it as `python -m app.qrdecode` in a
short-lived child process (app/decoder.py) under CHILD_ADDRESS_SPACE, which reads the image on
stdin and answers one JSON line on stdout, so a decode neither holds the server's event loop nor
leaves memory behind. An allocation past the limit fails the decode (a MemoryError, or libjpeg's
"broken data stream"), a 422 either way. The CLI calls read_texts in its own process.
"""

from __future__ import annotations

import io
import json
import resource
import sys
from typing import Any

import zxingcpp
from PIL import Image, ImageChops

MAX_UPLOAD_BYTES = 2 * 1024 * 1024
# Past these an image is refused from its header, before any pixel is decoded. PNG: any phone
# or tablet screenshot, and a 5K display's (14.7 MP). WebP (16 bytes a pixel while it loads):
# any phone or tablet screenshot (the largest, 1644x3840, is 6.3 MP). JPEG is decoded scaled.
MAX_PIXELS = {"PNG": 4096 * 4096, "WEBP": 6_500_000, "JPEG": 50_000_000}
DECODE_PIXELS = 12_000_000  # JPEG: decoded at 1/2, 1/4 or 1/8 until at most this many pixels
# A progressive JPEG keeps every DCT coefficient (2 bytes each) until its last scan, whatever
# the scale it is decoded at: 3 bytes a pixel for 4:2:0, 6 for 4:4:4, 8 for CMYK.
MAX_JPEG_COEFFICIENT_BYTES = 80 * 1024 * 1024
# The child's address space: its resident memory can never pass this, whatever the image (an
# allocation past it fails, and the decode with it). The limits above keep every image they
# let through below it: tests/test_hardening_uploads.py measures each at its limit.
CHILD_ADDRESS_SPACE = 150 * 1024 * 1024


class DecodeRefused(Exception):
    """The image is not one we read: too large, corrupt, or of another type (a 422)."""

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


def sniff(data: bytes) -> str | None:
    """Pillow format name from the magic bytes, or None if not an accepted type."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def _too_large(width: int, height: int, limit: int) -> DecodeRefused:
    return DecodeRefused(
        f"image is too large ({width}x{height} pixels)",
        {"width": width, "height": height, "max_pixels": limit},
    )


def _jpeg_scale(width: int, height: int) -> int:
    scale = 1
    while width * height > DECODE_PIXELS * scale * scale:
        scale *= 2
    return scale


def _check_coefficients(img: Image.Image) -> None:
    if not img.info.get("progressive"):
        return
    layers = getattr(img, "layer", None) or [("", 1, 1, 0)]
    h_max = max(h for _, h, _, _ in layers)
    v_max = max(v for _, _, v, _ in layers)
    width, height = img.size
    total = sum(
        -(-width * h // (h_max * 8)) * -(-height * v // (v_max * 8)) * 64 * 2
        for _, h, v, _ in layers
    )
    if total > MAX_JPEG_COEFFICIENT_BYTES:
        raise DecodeRefused(
            f"progressive JPEG is too large to decode ({width}x{height} pixels)",
            {"width": width, "height": height, "max_coefficient_bytes": MAX_JPEG_COEFFICIENT_BYTES},
        )


def _webp_size(data: bytes) -> tuple[int, int] | None:
    """The canvas size from a WebP's first chunk header. Pillow's WebP open() sets up the
    decoder, which allocates the whole canvas: the size has to be known before it."""
    chunk = data[12:16]
    if chunk == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
        return (int.from_bytes(data[26:28], "little") & 0x3FFF,
                int.from_bytes(data[28:30], "little") & 0x3FFF)
    if chunk == b"VP8X" and len(data) >= 30:
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    return None


def load_grayscale(data: bytes, fmt: str) -> Image.Image:
    """The image in mode L, transparent parts on white, at a bounded size."""
    if fmt == "WEBP" and (size := _webp_size(data)) and size[0] * size[1] > MAX_PIXELS[fmt]:
        raise _too_large(*size, MAX_PIXELS[fmt])
    try:
        with Image.open(io.BytesIO(data), formats=[fmt]) as img:
            # open() only parses the header, so these checks run before any pixel is decoded.
            width, height = img.size
            if width * height > MAX_PIXELS[fmt]:
                raise _too_large(width, height, MAX_PIXELS[fmt])
            if fmt == "JPEG":
                _check_coefficients(img)
                scale = _jpeg_scale(width, height)
                img.draft("L", (-(-width // scale), -(-height // scale)))
            img.load()
            return _flatten(img)
    except Image.DecompressionBombError:
        raise DecodeRefused("image is too large (decompression bomb)") from None
    # UnidentifiedImageError and truncated/corrupt data are OSErrors; some broken chunks and
    # headers surface as SyntaxError, ValueError or EOFError.
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise DecodeRefused(f"image is corrupt or truncated ({fmt.lower()})") from exc


def _flatten(img: Image.Image) -> Image.Image:
    """Grayscale on white: transparent pixels are often stored as black, and a code of dark
    modules on a transparent background would read as all black."""
    alpha = _alpha(img)
    if img.mode == "L":
        gray = img
    else:
        gray = img.convert("L")
        img.close()  # the full-size decoded image goes before anything else is made
    if alpha is not None:
        # white through the inverted alpha: gray * a + 255 * (1 - a), one byte a pixel
        gray.paste(255, None, ImageChops.invert(alpha))
    return gray


def _alpha(img: Image.Image) -> Image.Image | None:
    """The image's alpha as a 1-byte mask, or None if it has no transparency."""
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        return img.getchannel("A")
    transparency = img.info.get("transparency")
    if transparency is None:
        return None
    if img.mode in ("P", "L"):  # a palette entry's alpha, or a grey level keyed out (tRNS)
        if isinstance(transparency, bytes):
            lut = [transparency[i] if i < len(transparency) else 255 for i in range(256)]
        else:
            lut = [0 if i == transparency else 255 for i in range(256)]
        return img.point(lut, "L")
    return img.convert("RGBA").getchannel("A")  # another mode with one colour keyed out


def read_texts(data: bytes) -> list[str]:
    """The text of every QR code in a PNG, JPEG or WebP image, in the reader's order."""
    fmt = sniff(data)
    if fmt is None:
        raise DecodeRefused("unsupported image type: upload a PNG, JPEG or WebP image")
    gray = load_grayscale(data, fmt)
    codes = zxingcpp.read_barcodes(gray, formats=zxingcpp.BarcodeFormats(zxingcpp.QRCode))
    return [code.text.strip() for code in codes]


def peak_rss_kb() -> int:
    """This process's peak RSS. Not ru_maxrss: Linux carries that over a fork and exec from
    the parent, so a child of a 70 MB server would report at least 70 MB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def main() -> int:
    """The child: an image on stdin, one JSON line on stdout: {"texts": [...]} or
    {"error": message, "details": ...}, with the child's peak RSS ("peak_rss_kb")."""
    resource.setrlimit(resource.RLIMIT_AS, (CHILD_ADDRESS_SPACE, CHILD_ADDRESS_SPACE))
    data = sys.stdin.buffer.read(MAX_UPLOAD_BYTES + 1)
    answer: dict[str, Any]
    try:
        if len(data) > MAX_UPLOAD_BYTES:
            raise DecodeRefused("image is larger than 2 MB")
        answer = {"texts": read_texts(data)}
    except DecodeRefused as refused:
        answer = {"error": refused.message, "details": refused.details}
    except MemoryError:
        answer = {"error": "image is too large to decode", "details": None}
    answer["peak_rss_kb"] = peak_rss_kb()
    sys.stdout.write(json.dumps(answer) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
