"""The small HTML pages a scan can land on. Mobile-first, no scripts, no external assets."""

from __future__ import annotations

from functools import lru_cache
from html import escape

import segno

_STYLE = (
    "body{font-family:-apple-system,BlinkMacSystemFont,'Segoe UI',Roboto,'PingFang SC',"
    "'Microsoft YaHei',sans-serif;margin:0;padding:24px 16px;background:#f5f6f7;color:#222;"
    "text-align:center}main{max-width:420px;margin:0 auto;background:#fff;border-radius:12px;"
    "padding:24px 16px;box-shadow:0 1px 4px rgba(0,0,0,.08)}h1{font-size:20px;margin:0 0 12px}"
    "p{font-size:15px;line-height:1.5;color:#555}img{width:240px;height:240px;max-width:80vw;"
    "max-height:80vw;image-rendering:pixelated}a.btn{display:inline-block;margin-top:16px;"
    "padding:12px 24px;border-radius:8px;background:#07c160;color:#fff;text-decoration:none;"
    "font-size:16px}"
)


@lru_cache(maxsize=2048)
def qr_data_uri(url: str) -> str:
    """PNG, not SVG: WeChat recognises a long-pressed QR code only in an <img>. Always a
    regular QR code: segno.make picks Micro QR for URLs of up to ~13 characters, and phone
    cameras do not read Micro QR."""
    return str(segno.make_qr(url, error="m").png_data_uri(scale=8, border=2))


def _page(title: str, body: str, *, robots: bool = False) -> bytes:
    meta = "" if robots else '<meta name="robots" content="noindex,nofollow">'
    return (
        '<!doctype html><html><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"{meta}<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><main>{body}</main></body></html>"
    ).encode()


def _qr_block(url: str, hint: str) -> str:
    return (
        f'<img src="{qr_data_uri(url)}" alt="QR code">'
        f"<p>{escape(hint)}</p>"
        f'<a class="btn" href="{escape(url)}" rel="noreferrer">Open / 打开</a>'
    )


def group_page(pool_name: str, url: str) -> bytes:
    """Page mode: WeChat group codes only work when scanned or long-pressed inside WeChat."""
    title = pool_name or "Join the group"
    return _page(
        title,
        f"<h1>{escape(title)}</h1>"
        + _qr_block(url, "Long-press the QR code to join · 长按识别二维码加入群聊"),
    )


def redirect_page(url: str) -> bytes:
    return _page("Redirecting", f'<p>Redirecting to <a href="{escape(url)}">{escape(url)}</a></p>')


def fallback_page(pool_name: str, message: str, contact_url: str) -> bytes:
    title = pool_name or "All groups are full"
    text = message or (
        "All groups are full right now. Please try again later. · 群已满，请稍后再试。"
    )
    body = f"<h1>{escape(title)}</h1><p>{escape(text)}</p>"
    if contact_url:
        body += _qr_block(contact_url, "Contact us · 联系我们")
    return _page(title, body)


def closed_page(pool_name: str, outcome: str) -> bytes:
    text = {
        "paused": "This code is paused right now. Please try again later. "
        "· 活动暂停中，请稍后再试。",
        "not_started": "This code is not open yet. · 活动尚未开始。",
        "ended": "This code has ended. Thank you for your interest. · 活动已结束。",
    }.get(outcome, "This code is not available. · 暂不可用。")
    title = pool_name or "Not available"
    return _page(title, f"<h1>{escape(title)}</h1><p>{escape(text)}</p>")


NOT_FOUND = _page(
    "Not found", "<h1>Not found</h1><p>This code does not exist. · 二维码不存在。</p>"
)
UNAVAILABLE = _page(
    "Busy",
    "<h1>Busy</h1><p>We could not place you right now. Please scan again in a moment. "
    "· 系统繁忙，请稍后重新扫码。</p>",
)
PREVIEW = _page("Join the group", "<h1>Join the group</h1><p>Scan or open this link to join.</p>")
TOO_MANY = _page(
    "Slow down",
    "<h1>Slow down</h1><p>Too many scans from your network. Please try again in a minute. "
    "· 扫码过于频繁，请稍后再试。</p>",
)
METHOD_NOT_ALLOWED = _page("Method not allowed", "<h1>Method not allowed</h1>")
