"""Validation of target URLs (group invite links, fallback and contact URLs).

What passes is what gets stored and sent as a Location header: ASCII (IDNA host, percent-encoded
rest), at most MAX_URL_LENGTH characters once encoded, https (http only when allowed), a real host
name or IP literal, no user info, and no whitespace or control character of any script.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from dataclasses import dataclass
from urllib.parse import SplitResult, quote, urlsplit, urlunsplit

import idna

from app.errors import InvalidInput

MAX_URL_LENGTH = 2048
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_HOST_RE = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?\Z")
_SAFE = "/:@!$&'()*+,;=-._~%"
_JOINERS = "\u200c\u200d"  # ZWNJ and ZWJ: format characters, yet part of some IDNA 2008 labels


@dataclass(frozen=True)
class UrlPolicy:
    allow_http: bool = False
    allowed_hosts: frozenset[str] = frozenset()  # host names, in either form (IDNA or Unicode)


def ascii_host(host: str) -> str:
    """The host name browsers resolve, in ASCII, lowercased, without a trailing dot: UTS 46
    mapping, non-transitional, then IDNA 2008 A-labels. Python's "idna" codec is IDNA 2003,
    which maps ß to "ss" and ς to σ and deletes ZWJ/ZWNJ: `https://ß.de/` was stored as
    `ss.de`, another domain than the `xn--zca.de` a browser opens. ASCII labels other than
    A-labels pass as they are: browsers take `_` in host names, IDNA 2008 does not."""
    mapped = idna.uts46_remap(host, std3_rules=False, transitional=False).rstrip(".")
    return ".".join(
        label if label.isascii() and not label.startswith("xn--")
        else idna.alabel(label).decode("ascii")
        for label in mapped.split(".")
    )


def _ascii_or_none(host: str) -> str | None:
    try:
        return ascii_host(host)
    except UnicodeError:
        return None


def check_target_url(url: str, policy: UrlPolicy | None = None, field: str = "url") -> str:
    """The URL as it is to be stored, or InvalidInput."""
    policy = policy or UrlPolicy()

    def bad(why: str) -> InvalidInput:
        return InvalidInput(f"{field}: {why}", {"field": field})

    if len(url) > MAX_URL_LENGTH:
        raise bad(f"longer than {MAX_URL_LENGTH} characters")
    if "\\" in url:
        raise bad("contains a backslash")
    # Cc/Cf/Cs/Co/Cn and Zs/Zl/Zp: control, format, surrogate, unassigned, any kind of space
    if any(unicodedata.category(ch)[0] in "CZ" for ch in url if ch not in _JOINERS):
        raise bad("contains spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise bad(f"not a valid URL ({exc})") from None
    # joiners only in the host, where IDNA 2008 decides whether their context allows them
    if sum(url.count(j) for j in _JOINERS) != sum((parts.hostname or "").count(j)
                                                  for j in _JOINERS):
        raise bad("contains spaces or control characters")
    schemes = {"https", "http"} if policy.allow_http else {"https"}
    if parts.scheme.lower() not in schemes:
        raise bad(f"scheme must be one of {sorted(schemes)}")
    if "@" in parts.netloc:
        raise bad("must not carry user info")
    if "%" in parts.netloc:
        raise bad("the host must not be percent-encoded")
    host = parts.hostname or ""
    if not host:
        raise bad("has no host")
    if ":" in host:  # an IPv6 literal (urlsplit strips its brackets)
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise bad("not a valid IPv6 address") from None
        name = host
    else:
        try:
            name = ascii_host(host)
        except UnicodeError:
            raise bad("the host is not a valid domain name") from None
        if not _HOST_RE.match(name):
            raise bad("the host is not a valid domain name")
    allowed = [h for h in map(_ascii_or_none, policy.allowed_hosts) if h]
    if policy.allowed_hosts and not any(name == h or name.endswith("." + h) for h in allowed):
        raise bad(f"host {name!r} is not in the allow-list")
    stored = url if url.isascii() else _ascii(parts, name, port)
    if len(stored) > MAX_URL_LENGTH:
        raise bad(f"longer than {MAX_URL_LENGTH} characters once encoded")
    return stored


def _ascii(parts: SplitResult, host: str, port: int | None) -> str:
    """Location headers are ASCII: IDNA for the host, percent-encoding for the rest."""
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    return urlunsplit((
        parts.scheme,
        netloc,
        quote(parts.path, safe=_SAFE),
        quote(parts.query, safe=_SAFE + "?"),
        quote(parts.fragment, safe=_SAFE + "?"),
    ))
