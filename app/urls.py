"""Validation of target URLs (group invite links, fallback and contact URLs)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, urlsplit, urlunsplit

from app.errors import InvalidInput

MAX_URL_LENGTH = 2048


@dataclass(frozen=True)
class UrlPolicy:
    allow_http: bool = False
    allowed_hosts: frozenset[str] = frozenset()


def check_target_url(url: str, policy: UrlPolicy | None = None, field: str = "url") -> str:
    policy = policy or UrlPolicy()
    def bad(why: str) -> InvalidInput:
        return InvalidInput(f"{field}: {why}", {"field": field})

    if len(url) > MAX_URL_LENGTH:
        raise bad(f"longer than {MAX_URL_LENGTH} characters")
    if any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in url):
        raise bad("contains spaces or control characters")
    if "\\" in url:
        raise bad("contains a backslash")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise bad(f"not a valid URL ({exc})") from None
    schemes = {"https", "http"} if policy.allow_http else {"https"}
    if parts.scheme.lower() not in schemes:
        raise bad(f"scheme must be one of {sorted(schemes)}")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise bad("must not carry user info")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise bad("has no host")
    if port is not None and not 0 < port < 65536:
        raise bad("bad port")
    if policy.allowed_hosts and not any(
        host == h or host.endswith("." + h) for h in policy.allowed_hosts
    ):
        raise bad(f"host {host!r} is not in the allow-list")
    return _ascii(url) if not url.isascii() else url


def _ascii(url: str) -> str:
    """Location headers are ASCII: IDNA for the host, percent-encoding for the rest."""
    parts = urlsplit(url)
    try:
        host = (parts.hostname or "").encode("idna").decode("ascii")
    except UnicodeError:
        raise InvalidInput("url: host is not a valid internationalised domain name") from None
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    safe = "/:@!$&'()*+,;=-._~%"
    return urlunsplit(
        (
            parts.scheme,
            netloc,
            quote(parts.path, safe=safe),
            quote(parts.query, safe=safe + "?"),
            quote(parts.fragment, safe=safe + "?"),
        )
    )
