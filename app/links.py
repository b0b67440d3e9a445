"""The public scan URL of a pool: what posters encode. It comes only from the configuration
(LIVECODE_PUBLIC_URL, else the bind address), never from a request's Host header, which any
client can set."""

from __future__ import annotations

import ipaddress
from urllib.parse import quote, urlsplit

from app.errors import InvalidInput
from app.settings import Settings
from app.store.keys import CHANNEL_RE

SCAN_PATH = "/s/"


def public_base(settings: Settings) -> str:
    if settings.public_url:
        return settings.public_url.rstrip("/")
    host = settings.host
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.port}"


def scan_url(settings: Settings, pool_id: str, channel: str = "") -> str:
    url = public_base(settings) + SCAN_PATH + pool_id
    return f"{url}?ch={quote(channel, safe='')}" if channel else url


def check_channel(channel: str) -> str:
    """A poster's channel as scans count it (`?ch=`), or InvalidInput: a poster printed with
    a channel the scan path drops would count nothing."""
    if not CHANNEL_RE.match(channel):
        raise InvalidInput("ch: a channel is 1 to 32 letters, digits, '_', '.' or '-'",
                           {"field": "ch", "value": channel[:64]})
    return channel


def unreachable_reason(url: str) -> str | None:
    """Why phones cannot open `url` (a loopback or unspecified address), else None."""
    host = (urlsplit(url).hostname or "").rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return "loopback"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if ip.is_loopback:
        return "loopback"
    if ip.is_unspecified:
        return "unspecified"
    return None


def poster_warning(settings: Settings) -> str | None:
    """A sentence for operators when posters would encode an address no phone can reach."""
    base = public_base(settings)
    reason = unreachable_reason(base)
    if reason is None:
        return None
    what = "a loopback address" if reason == "loopback" else "not a reachable address"
    return (f"the poster URL {base} is {what}: phones cannot open it. Set "
            "LIVECODE_PUBLIC_URL to the address people reach this service at, e.g. "
            "https://qr.example.com")
