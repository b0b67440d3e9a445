"""Poster QR codes in the formats operators print from (PNG, SVG, PDF, EPS), one drawing function
for the API and the CLI; any other suffix is refused before anything is written."""

from __future__ import annotations

import io
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from xml.etree import ElementTree

import httpx
import pytest
import redis.asyncio as aredis
import segno
import zxingcpp
from asgi_lifespan import LifespanManager
from click.testing import CliRunner
from PIL import Image

from app.errors import InvalidInput
from app.main import create_app
from app.qr import poster_qr
from app.settings import Settings
from app.store.apikeys import ApiKeyStore
from tests.test_cli import fails, ok

URL = "https://lc.example/s/spring"


def read_png(data: bytes) -> str:
    return "".join(c.text for c in zxingcpp.read_barcodes(Image.open(io.BytesIO(data))))


def read_pdf(data: bytes, tmp_path: Path) -> str:
    """The PDF rendered by poppler (pdftoppm), then read like a photo of the print."""
    (tmp_path / "in.pdf").write_bytes(data)
    subprocess.run(["pdftoppm", "-png", "-r", "100", "-singlefile", str(tmp_path / "in.pdf"),
                    str(tmp_path / "page")], check=True, timeout=60)
    return read_png((tmp_path / "page.png").read_bytes())


def check_is(fmt: str, data: bytes, tmp_path: Path, scale: int = 10, border: int = 4) -> None:
    """The file is what its format says, and it holds a code that reads back as URL."""
    side = segno.make_qr(URL, error="m").symbol_size(scale=scale, border=border)[0]
    if fmt == "png":
        assert data.startswith(b"\x89PNG\r\n\x1a\n")
        assert read_png(data) == URL
    elif fmt == "svg":
        root = ElementTree.fromstring(data)
        assert root.tag == "{http://www.w3.org/2000/svg}svg"
        assert root.get("viewBox") == f"0 0 {side} {side}"
    elif fmt == "pdf":
        assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")
        assert read_pdf(data, tmp_path) == URL
    else:
        text = data.decode("ascii")
        assert text.startswith("%!PS-Adobe-3.0 EPSF-3.0\n")
        assert f"%%BoundingBox: 0 0 {side} {side}\n" in text
        assert text.rstrip().endswith("%%EOF")


@pytest.mark.parametrize("fmt", ["png", "svg", "pdf", "eps", "PDF"])
def test_each_format_is_what_it_says(fmt: str, tmp_path: Path) -> None:
    check_is(fmt.lower(), poster_qr(URL, fmt), tmp_path)


@pytest.mark.parametrize("fmt", ["jpg", "jpeg", "gif", "webp", "", "pdf ", "txt"])
def test_other_formats_are_refused(fmt: str) -> None:
    with pytest.raises(InvalidInput, match="format must be one of png, svg, pdf, eps"):
        poster_qr(URL, fmt)


# --- livecode qr -o ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["poster.png", "poster.svg", "poster.pdf", "poster.eps",
                                  "POSTER.PDF"])
def test_cli_writes_the_format_of_the_suffix(cli: CliRunner, tmp_path: Path, name: str) -> None:
    ok(cli, "pools", "create", "spring")
    ok(cli, "qr", "spring", "-o", name, "--scale", "6", "--border", "2")
    check_is(Path(name).suffix.lower()[1:], (tmp_path / name).read_bytes(), tmp_path, 6, 2)


@pytest.mark.parametrize("name", ["poster.jpg", "poster.jpeg", "poster.gif", "poster",
                                  "poster.png.txt", "poster.tiff"])
def test_cli_refuses_other_suffixes_and_writes_nothing(
    cli: CliRunner, tmp_path: Path, name: str
) -> None:
    ok(cli, "pools", "create", "spring")
    before = sorted(p.name for p in tmp_path.iterdir())
    result = fails(cli, "qr", "spring", "-o", name)
    assert result.output.count("\n") == 1, result.output
    assert "unsupported output format" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == before


# --- GET /api/v1/pools/{id}/qr.{fmt} ---------------------------------------------------------


@pytest.fixture
async def reader(redis_url: str) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Settings(redis_url=redis_url, public_url="https://lc.example"))
    client = aredis.Redis.from_url(redis_url)
    _, admin = await ApiKeyStore(client).create("admin")
    _, read = await ApiKeyStore(client).create("read")
    try:
        async with LifespanManager(app) as m:  # type: ignore[arg-type]
            transport = httpx.ASGITransport(app=m.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://lc.test") as http:
                r = await http.post("/api/v1/pools", json={"id": "spring"},
                                    headers={"Authorization": f"Bearer {admin}"})
                assert r.status_code == 201
                http.headers["Authorization"] = f"Bearer {read}"
                yield http
    finally:
        await client.aclose()


@pytest.mark.parametrize(("fmt", "media_type"), [
    ("png", "image/png"), ("svg", "image/svg+xml"), ("pdf", "application/pdf"),
    ("eps", "application/postscript"),
])
async def test_api_serves_each_format(
    reader: httpx.AsyncClient, tmp_path: Path, fmt: str, media_type: str
) -> None:
    r = await reader.get(f"/api/v1/pools/spring/qr.{fmt}", params={"scale": 6, "border": 2})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].split(";")[0] == media_type
    check_is(fmt, r.content, tmp_path, 6, 2)


async def test_api_refuses_other_formats(reader: httpx.AsyncClient) -> None:
    for fmt in ("jpg", "gif", "PDF", "ps"):
        r = await reader.get(f"/api/v1/pools/spring/qr.{fmt}")
        assert r.status_code == 422, (fmt, r.status_code)
        assert r.json()["error"]["code"] == "invalid_input"
    paths = (await reader.get("/openapi.json")).json()["paths"]
    content = paths["/api/v1/pools/{pool_id}/qr.{fmt}"]["get"]["responses"]["200"]["content"]
    assert set(content) == {"image/png", "image/svg+xml", "application/pdf",
                            "application/postscript"}
