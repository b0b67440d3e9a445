"""Link-preview fetchers and crawlers: they get a neutral page and never consume capacity.

In-app browsers (WeChat's MicroMessenger, WhatsApp's, Telegram's) are real people and are not
matched: WhatsApp's preview fetcher sends `WhatsApp/2.x` as the whole product token at the start,
while its in-app browser sends a full browser user agent.
"""

from __future__ import annotations

import re

_PREVIEW_FETCHERS = (
    "facebookexternalhit",
    "facebot",
    "facebookcatalog",
    "slackbot",
    "slack-imgproxy",
    "telegrambot",
    "twitterbot",
    "discordbot",
    "linkedinbot",
    "skypeuripreview",
    "pinterest",
    "redditbot",
    "embedly",
    "iframely",
    "vkshare",
    "tumblr",
    "bitlybot",
    "mastodon/",
    "bluesky cardyb",
    "google-pagerenderer",
    "googleother",
    "applebot",
    "snapchat",
    "viber",
    "line-poker",
    "kakaotalk-scrap",
    "yahoo! slurp",
    "ia_archiver",
    "headlesschrome",
    "python-requests",
    "go-http-client",
)

_BOT_RE = re.compile(
    "|".join(re.escape(s) for s in _PREVIEW_FETCHERS)
    # generic crawler tokens: "Googlebot/2.1", "bingbot/2.0", "Baiduspider", "Sogou web spider";
    # "bot" must be followed by "/" or "-" or end a word before ";" so phone models such as
    # "CUBOT P30" stay humans.
    + r"|[a-z]bot(?:/|-|;|\)|$)|spider|crawler|crawling"
    # WhatsApp's preview fetcher: the UA starts with the WhatsApp product token
    + r"|^whatsapp/",
    re.IGNORECASE,
)


def is_bot(user_agent: str) -> bool:
    if not user_agent:
        return False
    return _BOT_RE.search(user_agent) is not None
