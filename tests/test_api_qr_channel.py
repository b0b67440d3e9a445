"""Channel posters: the poster QR of one channel encodes /s/{id}?ch=<channel>, so that its scans
are counted apart; a channel the scan path would drop is refused."""

from __future__ import annotations

import io

import pytest
import zxingcpp
from PIL import Image

from app import qr
from tests.api_helpers import Api, assert_error, unchanged

URL = "https://lc.example/s/pool-a?ch=poster-a"


async def test_png_encodes_the_channel(api: Api) -> None:
    await api.make_pool("pool-a", 1)
    r = await api.call("GET", "/pools/pool-a/qr.png", params={"ch": "poster-a", "scale": 4})
    assert r.status_code == 200, r.text
    codes = zxingcpp.read_barcodes(Image.open(io.BytesIO(r.content)))
    assert [c.text for c in codes] == [URL]


async def test_svg_encodes_the_channel(api: Api) -> None:
    await api.make_pool("pool-a", 1)
    r = await api.call("GET", "/pools/pool-a/qr.svg", params={"ch": "poster-a", "scale": 4})
    assert r.status_code == 200, r.text
    # the same drawing as the one of the channel URL, and not the plain one's
    assert r.content == qr.qr_svg(URL, scale=4)
    assert r.content != qr.qr_svg("https://lc.example/s/pool-a", scale=4)


async def test_a_scan_of_a_channel_poster_counts_for_its_channel(api: Api) -> None:
    await api.make_pool("pool-a", 1)
    r = await api.call("GET", "/pools/pool-a/qr.png", params={"ch": "poster-a"})
    url = qr.decode_qr_image(r.content)
    r = await api.scan("pool-a?" + url.split("?", 1)[1])
    assert r.status_code == 302
    assert (await api.pool("pool-a"))["totals"]["by_channel"] == {"poster-a": 1}


@pytest.mark.parametrize("ch", ["", "has space", "x" * 33, "ä", "a/b", "a?b"])
@pytest.mark.parametrize("fmt", ["png", "svg"])
async def test_an_invalid_channel_is_422(api: Api, ch: str, fmt: str) -> None:
    await api.make_pool("pool-a", 1)
    async with unchanged(api.redis):
        r = await api.call("GET", f"/pools/pool-a/qr.{fmt}", params={"ch": ch})
        assert_error(r, 422, "invalid_input")
