"""The admin REST API (/api/v1), end to end over HTTP. The poster QR (qr.png, qr.svg) of the pool's
public scan URL."""

from __future__ import annotations

import io
from typing import Any
from xml.etree import ElementTree

import pytest
import zxingcpp
from PIL import Image

from app.qr import decode_qr_image
from tests.api_helpers import (
    Api,
    assert_error,
    unchanged,
)


def _png_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as img:
        assert img.format == "PNG"
        return img.size


async def test_poster_png_decodes_to_the_public_scan_url(api: Api) -> None:
    await api.make_pool("pool-a", 1)
    r = await api.call("GET", "/pools/pool-a/qr.png", key="read")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert decode_qr_image(r.content) == "https://lc.example/s/pool-a"


async def test_poster_png_options_change_the_image(api: Api) -> None:
    await api.make_pool("pool-a", 1)

    async def png(**params: Any) -> bytes:
        r = await api.call("GET", "/pools/pool-a/qr.png", params=params)
        assert r.status_code == 200, r.text
        assert decode_qr_image(r.content) == "https://lc.example/s/pool-a"
        return r.content

    w3, h3 = _png_size(await png(scale=3, border=0))
    w6, _ = _png_size(await png(scale=6, border=0))
    w6b, _ = _png_size(await png(scale=6, border=5))
    assert w3 == h3 and w6 == 2 * w3
    assert w6b == w6 + 2 * 5 * 6
    default_w, _ = _png_size(await png())
    assert default_w == (w3 // 3 + 2 * 4) * 10
    for level in ("l", "H"):
        codes = zxingcpp.read_barcodes(Image.open(io.BytesIO(await png(error=level))))
        assert [c.text for c in codes] == ["https://lc.example/s/pool-a"]
        if level == "H":
            assert codes[0].ec_level == "H"


async def test_poster_svg_is_an_svg_document(api: Api) -> None:
    await api.make_pool("pool-a", 1)
    r = await api.call("GET", "/pools/pool-a/qr.svg", params={"scale": 4, "border": 2})
    assert r.status_code == 200 and r.headers["content-type"].startswith("image/svg+xml")
    root = ElementTree.fromstring(r.content)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    png = await api.call("GET", "/pools/pool-a/qr.png", params={"scale": 4, "border": 2})
    width, height = _png_size(png.content)
    assert (root.get("width"), root.get("height")) == (str(width), str(height))
    assert root.get("viewBox") is not None


@pytest.mark.parametrize(
    "params",
    [{"scale": 0}, {"scale": 51}, {"scale": "big"}, {"border": -1}, {"border": 21},
     {"error": "x"}, {"error": "mm"}, {"error": ""}],
)
@pytest.mark.parametrize("fmt", ["png", "svg"])
async def test_poster_bad_options_are_422(api: Api, params: dict[str, Any], fmt: str) -> None:
    await api.make_pool("pool-a", 1)
    async with unchanged(api.redis):
        r = await api.call("GET", f"/pools/pool-a/qr.{fmt}", params=params)
        assert_error(r, 422, "invalid_input")


async def test_poster_of_an_unknown_pool_is_404(api: Api) -> None:
    for path in ("/pools/nope-pool/qr.png", "/pools/nope-pool/qr.svg", "/pools/NOPE/qr.png"):
        assert_error(await api.call("GET", path), 404, "not_found")
    # the format is checked before the pool: an unsupported one is invalid input, whatever pool
    error = assert_error(await api.call("GET", "/pools/nope-pool/qr.gif"), 422, "invalid_input")
    assert [d["loc"] for d in error["details"]] == [["path", "fmt"]], error
