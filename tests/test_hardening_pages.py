"""The QR codes on scan pages are regular QR codes: phone cameras do not read Micro QR, which
segno.make picks for data as short as a 13-character contact URL."""

from __future__ import annotations

import base64
import io
import re

import pytest
import zxingcpp
from PIL import Image

from app import pages
from app.urls import UrlPolicy, check_target_url

# the shortest URLs that pass validation, then a few up to where Micro QR ends (21 bytes)
SHORT_URLS = ["http://a", "https://a", "https://a.b", "https://t.me/", "https://t.me/+Ab",
              "https://wa.me/86138001", "https://work.weixin.qq.com/u/abc"]


def page_codes(html: bytes) -> list[zxingcpp.Barcode]:
    found = re.findall(rb'<img src="data:image/png;base64,([^"]+)"', html)
    assert len(found) == 1, html
    image = Image.open(io.BytesIO(base64.b64decode(found[0]))).convert("L")
    return zxingcpp.read_barcodes(image)  # every format: a Micro QR code would be found too


@pytest.mark.parametrize("url", SHORT_URLS)
def test_page_qr_codes_are_regular_qr_codes(url: str) -> None:
    assert check_target_url(url, UrlPolicy(allow_http=True)) == url
    for html in (pages.fallback_page("Pool", "All full", url), pages.group_page("Pool", url)):
        codes = page_codes(html)
        assert [(c.format, c.text) for c in codes] == [(zxingcpp.BarcodeFormat.QRCode, url)]
