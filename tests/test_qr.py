"""app.qr on real images: segno draws the codes, Pillow re-encodes them, zxing-cpp reads them."""

from __future__ import annotations

import io
import random
import struct
import time
import zlib
from xml.etree import ElementTree

import pytest
import segno
from PIL import Image

from app.errors import InvalidInput
from app.qr import PayloadTooLarge, decode_qr_image, is_wechat_group_url, qr_png, qr_svg

WECHAT = "https://weixin.qq.com/g/AbCdEf123"
WHATSAPP = "https://chat.whatsapp.com/Abc123"
TELEGRAM = "https://t.me/+AbCdEfGh123"


def qr_image(data: str, scale: int = 6) -> Image.Image:
    out = io.BytesIO()
    segno.make_qr(data).save(out, kind="png", scale=scale, border=4)
    return Image.open(out).convert("RGB")


def encode(img: Image.Image, fmt: str, **options: int) -> bytes:
    out = io.BytesIO()
    img.save(out, fmt, **options)
    return out.getvalue()


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def blank_png(width: int, height: int) -> bytes:
    """A valid 1-bit PNG of one colour: declares width*height pixels, weighs a few KB."""
    packer = zlib.compressobj(9)
    row = b"\0" * (1 + (width + 7) // 8)
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


# --- decoding ------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
@pytest.mark.parametrize("url", [WECHAT, WHATSAPP, TELEGRAM])
def test_decodes_png_jpeg_webp(fmt: str, url: str) -> None:
    assert decode_qr_image(encode(qr_image(url), fmt)) == url


def test_decodes_a_screenshot_like_image() -> None:
    """QR off-centre on a noisy, larger canvas, saved as a lossy JPEG."""
    rnd = random.Random(7)
    canvas = Image.new("RGB", (900, 1400), (236, 236, 236))
    noise = Image.frombytes("L", canvas.size, rnd.randbytes(canvas.width * canvas.height))
    canvas = Image.blend(canvas, noise.convert("RGB"), 0.15)
    canvas.paste(qr_image(WECHAT, scale=8), (180, 420))
    assert decode_qr_image(encode(canvas, "JPEG", quality=70)) == WECHAT


def test_decodes_rotated_code() -> None:
    rotated = qr_image(WHATSAPP).rotate(90, expand=True)
    assert decode_qr_image(encode(rotated, "PNG")) == WHATSAPP


def test_decodes_transparent_background() -> None:
    # Dark modules on a transparent background: without compositing on white it reads as all black.
    out = io.BytesIO()
    segno.make_qr(WECHAT).save(out, kind="png", scale=6, light=None)
    rgba = Image.open(out).convert("RGBA")
    assert rgba.getpixel((0, 0))[3] == 0  # type: ignore[index]
    black_under = Image.new("RGBA", rgba.size, (0, 0, 0, 0))
    black_under.paste(rgba, (0, 0))
    for data in (out.getvalue(), encode(black_under, "PNG"), encode(black_under, "WEBP")):
        assert decode_qr_image(data) == WECHAT


def test_payload_is_stripped() -> None:
    assert decode_qr_image(encode(qr_image(f"  {WHATSAPP}\n"), "PNG")) == WHATSAPP


def test_several_codes_first_url_wins() -> None:
    canvas = Image.new("RGB", (900, 320), "white")
    canvas.paste(qr_image("just some text"), (20, 20))
    canvas.paste(qr_image(TELEGRAM), (470, 20))
    assert decode_qr_image(encode(canvas, "PNG")) == TELEGRAM


def test_code_without_url_is_rejected() -> None:
    with pytest.raises(InvalidInput, match="does not hold a URL") as info:
        decode_qr_image(encode(qr_image("WIFI:S:cafe;T:WPA;P:secret;;"), "PNG"))
    assert info.value.status == 422
    for not_a_url in ("ftp://example.com/x", "javascript:alert(1)", "https://"):
        with pytest.raises(InvalidInput, match="does not hold a URL"):
            decode_qr_image(encode(qr_image(not_a_url), "PNG"))


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_image_without_code(fmt: str) -> None:
    rnd = random.Random(3)
    gradient = Image.linear_gradient("L").resize((400, 300)).convert("RGB")
    noise = Image.frombytes("RGB", (400, 300), rnd.randbytes(400 * 300 * 3))
    with pytest.raises(InvalidInput, match="no QR code found in the image"):
        decode_qr_image(encode(Image.blend(gradient, noise, 0.3), fmt))


def test_type_is_sniffed_from_content() -> None:
    gif = encode(qr_image(WECHAT), "GIF")
    bmp = encode(qr_image(WECHAT), "BMP")
    rejected = {
        "random bytes": random.Random(5).randbytes(4096),
        "gif": gif,
        "bmp": bmp,
        "text": b"https://weixin.qq.com/g/AbCdEf123\n",
        "svg": qr_svg(WECHAT),
        "empty": b"",
    }
    for name, data in rejected.items():
        with pytest.raises(InvalidInput, match="PNG, JPEG or WebP") as info:
            decode_qr_image(data)
        assert info.value.status == 422, name


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_corrupt_or_truncated(fmt: str) -> None:
    data = encode(qr_image(WECHAT), fmt)
    magic_only = {"PNG": data[:8], "JPEG": data[:3], "WEBP": data[:12]}[fmt]
    png_magic_jpeg_body = b"\x89PNG\r\n\x1a\n" + encode(qr_image(WECHAT), "JPEG")
    for bad in (data[: len(data) // 2], data[:40], magic_only, png_magic_jpeg_body):
        with pytest.raises(InvalidInput, match="corrupt or truncated"):
            decode_qr_image(bad)


def test_payload_too_large() -> None:
    data = encode(qr_image(WECHAT), "PNG")
    assert decode_qr_image(data, max_bytes=len(data)) == WECHAT
    with pytest.raises(PayloadTooLarge) as info:
        decode_qr_image(data, max_bytes=len(data) - 1)
    assert (info.value.status, info.value.code) == (413, "payload_too_large")
    assert info.value.body()["error"]["details"] == {"size": len(data), "max_bytes": len(data) - 1}
    with pytest.raises(PayloadTooLarge):
        decode_qr_image(random.Random(1).randbytes(3 * 1024 * 1024))


@pytest.mark.parametrize(
    ("side", "message"),
    [
        (20_000, "decompression bomb"),  # past Pillow's own limit: open() refuses it
        (7_000, "7000x7000 pixels"),  # 49 MP: under Pillow's limit, over ours
    ],
)
def test_decompression_bomb(side: int, message: str) -> None:
    bomb = blank_png(side, side)
    assert len(bomb) < 100_000
    started = time.perf_counter()
    with pytest.raises(InvalidInput, match=message):
        decode_qr_image(bomb)
    assert time.perf_counter() - started < 0.5


# --- encoding ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scale", "border", "error"), [(10, 4, "m"), (1, 0, "L"), (3, 2, "q"), (50, 20, "H")]
)
def test_qr_png_round_trip(scale: int, border: int, error: str) -> None:
    data = qr_png(WECHAT, scale=scale, border=border, error=error)
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    expected = segno.make_qr(WECHAT, error=error).symbol_size(scale=scale, border=border)
    assert Image.open(io.BytesIO(data)).size == expected
    if scale > 1:  # one pixel per module is below what a reader can sample
        assert decode_qr_image(data) == WECHAT


def test_qr_svg_is_standalone_document() -> None:
    svg = qr_svg(WHATSAPP, scale=5, border=2)
    assert svg.startswith(b"<?xml")
    root = ElementTree.fromstring(svg)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    size = segno.make_qr(WHATSAPP, error="m").symbol_size(scale=5, border=2)
    assert root.get("viewBox") == f"0 0 {size[0]} {size[1]}"
    assert (root.get("width"), root.get("height")) == (str(size[0]), str(size[1]))
    fills = {
        p.get("fill") or p.get("stroke") for p in root.iter("{http://www.w3.org/2000/svg}path")
    }
    assert fills == {"#fff", "#000"}  # opaque white background, black modules
    # The PNG of the same options is the same symbol, and it reads back.
    assert decode_qr_image(qr_png(WHATSAPP, scale=5, border=2)) == WHATSAPP


@pytest.mark.parametrize(
    "options",
    [
        {"scale": 0},
        {"scale": 51},
        {"scale": True},
        {"border": -1},
        {"border": 21},
        {"error": "x"},
        {"error": ""},
        {"error": "mm"},
    ],
)
def test_bad_encode_options(options: dict[str, object]) -> None:
    for render in (qr_png, qr_svg):
        with pytest.raises(InvalidInput):
            render(WECHAT, **options)  # type: ignore[arg-type]


def test_bad_encode_data() -> None:
    for render in (qr_png, qr_svg):
        with pytest.raises(InvalidInput, match="nothing to encode"):
            render("")
        with pytest.raises(InvalidInput, match="too long"):
            render("x" * 8000)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (WECHAT, True),
        ("http://weixin.qq.com/g/AbCdEf123", True),
        ("https://WEIXIN.QQ.COM/g/AbC", True),
        ("https://weixin.qq.com./g/AbC?x=1", True),
        (" https://weixin.qq.com/g/AbC ", True),
        ("https://weixin.qq.com/g/", False),
        ("https://weixin.qq.com/q/AbC", False),
        ("https://weixin.qq.com/", False),
        ("https://u.wechat.com/g/AbC", False),
        ("https://weixin.qq.com.evil.com/g/AbC", False),
        ("https://evil.com/weixin.qq.com/g/AbC", False),
        ("https://weixin.qq.com@evil.com/g/AbC", False),
        ("ftp://weixin.qq.com/g/AbC", False),
        (WHATSAPP, False),
        ("https://[::1/g/x", False),
        ("", False),
    ],
)
def test_is_wechat_group_url(url: str, expected: bool) -> None:
    assert is_wechat_group_url(url) is expected
