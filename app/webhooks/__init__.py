"""Webhooks: operators subscribe an endpoint or a chat robot (WeCom, DingTalk, Feishu/Lark,
Slack, or any Standard Webhooks receiver) to events; `enqueue` turns an event into deliveries
and the deliverer sends them, at least once, with retries, into dead letters at the end."""
