"""The admin REST API (/api/v1), end to end over HTTP. Group upload: a QR image decoded to the
invite URL, and every way an upload is refused."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app.qr import MAX_UPLOAD_BYTES
from tests.api_helpers import (
    TELEGRAM,
    WECHAT,
    WHATSAPP,
    Api,
    assert_error,
    blank_image,
    iso,
    parse_dt,
    qr_bytes,
    unchanged,
)


def upload_files(image: bytes, filename: str = "qr.png", ctype: str = "image/png") -> Any:
    return {"file": (filename, image, ctype)}


async def test_upload_wechat_png_makes_a_page_mode_group_expiring_in_7_days(api: Api) -> None:
    await api.ok("POST", "/pools", 201, json={"id": "pool-a"})
    before = datetime.now(UTC)
    r = await api.call("POST", "/pools/pool-a/groups/upload", files=upload_files(qr_bytes(WECHAT)),
                       data={"name": "WeChat 1", "capacity": "150"})
    after = datetime.now(UTC)
    assert r.status_code == 201, r.text
    g = r.json()
    assert (g["url"], g["mode"], g["name"], g["capacity"]) == (WECHAT, "page", "WeChat 1", 150)
    expires = parse_dt(g["expires_at"])
    week = timedelta(days=7)
    assert before + week - timedelta(seconds=1) <= expires <= after + week + timedelta(seconds=1)
    assert g["expired"] is False
    assert await api.group("pool-a", g["id"]) == g
    # a scan shows the long-pressable page with the WeChat link
    page = await api.scan("pool-a")
    assert page.status_code == 200 and "data:image/png;base64," in page.text
    assert WECHAT in page.text
    assert (await api.group("pool-a", g["id"]))["count"] == 1


async def test_upload_whatsapp_jpeg_makes_a_redirect_group_without_expiry(api: Api) -> None:
    await api.ok("POST", "/pools", 201, json={"id": "pool-a"})
    r = await api.call("POST", "/pools/pool-a/groups/upload",
                       files=upload_files(qr_bytes(WHATSAPP, "JPEG"), "qr.jpg", "image/jpeg"),
                       data={"id": "wa-1", "weight": "3", "enabled": "true"})
    assert r.status_code == 201, r.text
    g = r.json()
    assert (g["id"], g["url"], g["weight"], g["enabled"]) == ("wa-1", WHATSAPP, 3, True)
    assert g["expires_at"] is None and g["mode"] is None  # the pool's mode applies
    scan = await api.scan("pool-a")
    assert (scan.status_code, scan.headers["location"]) == (302, WHATSAPP)


async def test_upload_honours_explicit_fields_over_the_wechat_defaults(api: Api) -> None:
    await api.ok("POST", "/pools", 201, json={"id": "pool-a"})
    expires = datetime(2031, 5, 4, 3, 2, 1, tzinfo=UTC)
    r = await api.call("POST", "/pools/pool-a/groups/upload",
                       files=upload_files(qr_bytes(WECHAT, "WEBP"), "qr.webp", "image/webp"),
                       data={"expires_at": iso(expires), "mode": "redirect", "enabled": "false"})
    assert r.status_code == 201, r.text
    g = r.json()
    assert parse_dt(g["expires_at"]) == expires
    assert (g["mode"], g["enabled"], g["url"]) == ("redirect", False, WECHAT)
    r = await api.call("POST", "/pools/pool-a/groups/upload",
                       files=upload_files(qr_bytes(TELEGRAM)), data={"expires_at": iso(expires)})
    assert r.status_code == 201, r.text
    assert parse_dt(r.json()["expires_at"]) == expires and r.json()["mode"] is None


def _multipart(parts: list[tuple[str, bytes, str | None]], boundary: str = "XyZb0und") -> bytes:
    out = io.BytesIO()
    for name, value, filename in parts:
        out.write(f"--{boundary}\r\n".encode())
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out.write(f"Content-Disposition: {disp}\r\n".encode())
        if filename:
            out.write(b"Content-Type: application/octet-stream\r\n")
        out.write(b"\r\n" + value + b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue()


def _big_png(size: int) -> bytes:
    """A real QR PNG padded to about `size` bytes with an ancillary chunk."""
    png = qr_bytes(WHATSAPP)
    pad = b"x" * (size - len(png) + 16)
    chunk = struct.pack(">I", len(pad)) + b"tEXt" + pad
    chunk += struct.pack(">I", zlib.crc32(b"tEXt" + pad))
    return png[:33] + chunk + png[33:]


UPLOAD_ERRORS: list[Any] = [
    pytest.param({"files": upload_files(blank_image())}, 422, id="no-qr-code"),
    pytest.param({"files": upload_files(b"GIF89a" + b"\0" * 64, "a.gif", "image/gif")}, 422,
                 id="gif"),
    pytest.param({"files": upload_files(qr_bytes("hello, not a url"))}, 422, id="not-a-url"),
    pytest.param({"files": upload_files(qr_bytes("http://chat.example.com/x"))}, 422,
                 id="http-url-in-code"),
    pytest.param({"files": upload_files(qr_bytes(WHATSAPP)), "data": {"capacity": "0"}}, 422,
                 id="capacity-0"),
    pytest.param({"files": upload_files(qr_bytes(WHATSAPP)), "data": {"capacity": "lots"}},
                 422, id="capacity-text"),
    pytest.param({"files": upload_files(qr_bytes(WHATSAPP)), "data": {"colour": "red"}}, 422,
                 id="unknown-field"),
    pytest.param({"files": upload_files(qr_bytes(WHATSAPP)), "data": {"id": "g1"}}, 409,
                 id="duplicate-id"),
    pytest.param({"files": upload_files(qr_bytes(WHATSAPP)), "data": {"mode": "popup"}}, 422,
                 id="bad-mode"),
    pytest.param({"data": {"name": "no file"}, "files": {"other": ("a.txt", b"x", "text/plain")}},
                 422, id="missing-file"),
    pytest.param({"data": {"file": "just text"}}, 422, id="file-as-text-field"),
    pytest.param({"json": {"file": "x"}}, 422, id="json-not-multipart"),
    pytest.param({"content": b"raw", "headers": {"content-type": "image/png"}}, 422,
                 id="raw-image-not-multipart"),
    pytest.param({"content": _multipart([("file", qr_bytes(WHATSAPP), "a.png")]),
                  "headers": {"content-type": "multipart/form-data"}}, 422, id="no-boundary"),
    pytest.param({"content": b"--XyZb0und\r\nbroken", "headers": {
        "content-type": "multipart/form-data; boundary=XyZb0und"}}, 422, id="truncated-form"),
    pytest.param({"files": upload_files(_big_png(MAX_UPLOAD_BYTES + 1))}, 413,
                 id="file-just-over-2mb"),
    pytest.param({"files": upload_files(_big_png(3 * 1024 * 1024))}, 413, id="body-3mb"),
]


@pytest.mark.parametrize(("kwargs", "status"), UPLOAD_ERRORS)
async def test_upload_errors_change_nothing(
    api: Api, kwargs: dict[str, Any], status: int
) -> None:
    await api.make_pool("pool-a", 1)
    async with unchanged(api.redis):
        r = await api.call("POST", "/pools/pool-a/groups/upload", **kwargs)
        error = assert_error(r, status)
    if status == 413:
        assert error["code"] == "payload_too_large"


async def test_upload_streamed_without_content_length_is_capped(api: Api) -> None:
    await api.make_pool("pool-a", 1)
    body = _multipart([("file", _big_png(3 * 1024 * 1024), "a.png")])

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(body), 64 * 1024):
            yield body[i : i + 64 * 1024]

    async with unchanged(api.redis):
        r = await api.call("POST", "/pools/pool-a/groups/upload", content=chunks(),
                           headers={"content-type": "multipart/form-data; boundary=XyZb0und"})
        assert "content-length" not in r.request.headers
        assert_error(r, 413, "payload_too_large")


async def test_upload_a_file_just_under_the_limit_is_accepted(api: Api) -> None:
    await api.make_pool("pool-a", 0)
    image = _big_png(MAX_UPLOAD_BYTES - 64)
    assert len(image) <= MAX_UPLOAD_BYTES
    r = await api.call("POST", "/pools/pool-a/groups/upload", files=upload_files(image))
    assert r.status_code == 201, r.text
    assert r.json()["url"] == WHATSAPP


async def test_upload_to_an_unknown_or_malformed_pool_is_404(api: Api) -> None:
    async with unchanged(api.redis):
        r = await api.call("POST", "/pools/Not_A_Pool/groups/upload",
                           files=upload_files(qr_bytes(WHATSAPP)))
        assert_error(r, 404, "not_found")
