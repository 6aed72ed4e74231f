"""`slack`: an incoming-webhook message, `text` plus Block Kit `blocks`.

Mattermost and Rocket.Chat accept the same JSON and show `text` (title, why, first step, owner, link);
Slack shows the blocks and uses `text` for its notification. Values from alerts are escaped
(`&`, `<`, `>`), so an alert cannot post `<!channel>` or a link of its own. Lengths are clipped
to Slack's limits (header 150, section text 3000, a field 2000), which would refuse the message.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import SecretStr

from engine.notify.channels import text
from engine.notify.channels.http import post_json, shown_url, url_secrets
from engine.notify.notice import Notice

#: Where each field goes: the section of sentences, or the two-column fields.
SENTENCES = ("reason", "automation", "first_step")
COLUMNS = ("what", "where", "severity", "since", "respond_by", "due_at", "acknowledged", "resolved", "owner")


def escape(value: str) -> str:
    """Slack's mrkdwn control characters, as Slack asks them escaped."""
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def message(notice: Notice) -> dict[str, Any]:
    title = text.title(notice)
    rows = {row.key: row for row in text.fields(notice)}
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": text.clip(title, 150), "emoji": False}}
    ]
    sentences = [f"*{rows[key].label}:* {escape(rows[key].value)}" for key in SENTENCES if key in rows]
    if sentences:
        blocks.append(
            {"type": "section", "text": {"type": "mrkdwn", "text": text.clip("\n".join(sentences), 3000)}}
        )
    columns = [
        {"type": "mrkdwn", "text": text.clip(f"*{rows[key].label}*\n{escape(rows[key].value)}", 2000)}
        for key in COLUMNS
        if key in rows
    ]
    if columns:
        blocks.append({"type": "section", "fields": columns})
    link = rows["link"].value if "link" in rows else ""
    footer = f"<{escape(link).replace('|', '%7C')}|{text.link_text(notice)}>" if link else "Suture"
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": footer}]})
    # What Mattermost and Rocket.Chat show (they ignore blocks): the title, then the lines that
    # matter at 3 a.m., then the link.
    lines = [escape(title)] + [
        f"{rows[key].label}: {escape(rows[key].value)}"
        for key in ("reason", "first_step", "owner")
        if key in rows
    ]
    fallback = "\n".join(lines) + (f"\n{escape(link)}" if link else "")
    return {"text": text.clip(fallback, 3000), "blocks": blocks}


class SlackChannel:
    kind = "slack"

    def __init__(self, name: str, url: str, *, timeout: float, url_secret_name: str | None = None) -> None:
        self.name = name
        self._url = url
        self._timeout = timeout
        self._shown = shown_url(url, secret_name=url_secret_name)
        self._secrets: list[str | SecretStr | None] = list(url_secrets(url)) if url_secret_name else []

    def send(self, notice: Notice) -> str:
        data = json.dumps(message(notice), ensure_ascii=False, separators=(",", ":")).encode()
        return post_json(
            self._url,
            data,
            what=f"channel {self.name}",
            shown=self._shown,
            timeout=self._timeout,
            secrets=self._secrets,
        )
