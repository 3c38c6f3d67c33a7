"""What each channel says when a job ends, and who is owed a message. Plain functions."""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from typing import Any

from backburner.store import Job
from backburner.store.channels import Endpoint, OwnerChannels
from backburner.store.outbox import OwedDelivery

TITLES = {
    "job.succeeded": "Completed",
    "job.failed": "Failed",
    "job.canceled": "Canceled",
}


@dataclass(frozen=True)
class Links:
    base_url: str

    def page(self, job_id: str) -> str:
        return f"{self.base_url}/jobs/{job_id}"

    def api(self, job_id: str) -> str:
        return f"{self.base_url}/api/jobs/{job_id}"

    def result(self, job_id: str) -> str:
        return f"{self.base_url}/api/jobs/{job_id}/result"


def webhook_body(
    job: Job, event_type: str, event_id: str, links: Links, inline_limit: int
) -> dict[str, Any]:
    """`{job_id, status, result | null, error | null}` plus type, completed_at and the event
    id; a result larger than `inline_limit` bytes, or stored as an object, is linked
    (`result_url`, fetched with the owner's API key), not inlined. `error` is the job's as
    `GET /api/jobs/{id}` gives it (kind, message, retryable: whether the same job sent
    again may succeed); `error_message` stays beside it for receivers written before."""
    succeeded = job.status.value == "succeeded"
    result = job.result if succeeded else None
    too_large = (succeeded and job.result_object is not None) or (
        result is not None and len(json.dumps(result)) > inline_limit
    )
    return {
        "id": event_id,
        "type": event_type,
        "job_id": job.id,
        "job_type": job.type,
        "status": job.status.value,
        "result": None if too_large else result,
        "result_url": links.result(job.id) if too_large else None,
        "error": job.error(),
        "error_message": job.error_message,
        "completed_at": job.completed_at.isoformat() if job.completed_at else None,
    }


def summary_line(job: Job) -> str:
    state = TITLES.get(f"job.{job.status.value}", job.status.value)
    line = f"{job.type} job {job.id}: {state}"
    if job.error_message and job.status.value != "succeeded":
        line += f" — {job.error_message}"
    return line


EXCERPT_CHARS = 400


def result_excerpt(job: Job) -> list[tuple[str, str]]:
    """What a message says of a succeeded result besides the link: its counts, its
    headline, and the first lines of its summary (cut at EXCERPT_CHARS)."""
    result = job.result
    if job.status.value != "succeeded" or not isinstance(result, dict):
        return []
    lines: list[tuple[str, str]] = []
    for key in ("documents", "chunks", "transaction_count"):
        if isinstance(result.get(key), int) and not isinstance(result.get(key), bool):
            lines.append((key.replace("_", " ").capitalize(), f"{result[key]:,}"))
    counts = result.get("label_counts")
    if isinstance(counts, dict) and counts:
        lines.append(("Labels", ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))))
    for key in ("headline", "summary"):
        text = result.get(key)
        if isinstance(text, str) and text.strip():
            cut = text.strip()
            if len(cut) > EXCERPT_CHARS:
                cut = cut[:EXCERPT_CHARS].rsplit(" ", 1)[0] + " …"
            lines.append((key.capitalize(), cut))
    return lines


def email_message(job: Job, links: Links, to: str) -> dict[str, Any]:
    state = TITLES.get(f"job.{job.status.value}", job.status.value)
    url = links.page(job.id)
    excerpt = result_excerpt(job)
    text = f"{summary_line(job)}\n\n" + "".join(f"{k}: {v}\n" for k, v in excerpt)
    text += f"{chr(10) if excerpt else ''}View result: {url}\n"
    detail = (
        f"<p>{html.escape(job.error_message)}</p>"
        if job.error_message and job.status.value != "succeeded"
        else ""
    )
    if excerpt:
        detail += (
            "<dl>"
            + "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in excerpt)
            + "</dl>"
        )
    body = (
        f"<p>Your <strong>{html.escape(job.type)}</strong> job "
        f"<code>{html.escape(job.id)}</code> is <strong>{state.lower()}</strong>.</p>"
        f'{detail}<p><a href="{html.escape(url)}">View result</a></p>'
    )
    return {
        "to": to,
        "subject": f"[Backburner] {job.type}: {state.lower()}",
        "text": text,
        "html": body,
    }


def slack_message(job: Job, links: Links) -> dict[str, Any]:
    """Slack Block Kit: a section with the outcome and a button to the job's page."""
    return {
        "text": summary_line(job),
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*{summary_line(job)}*"}},
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "View result"},
                        "url": links.page(job.id),
                    }
                ],
            },
        ],
    }


def teams_message(job: Job, links: Links) -> dict[str, Any]:
    """A Microsoft Teams incoming-webhook message carrying an Adaptive Card."""
    return {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": None,
                "content": {
                    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                    "type": "AdaptiveCard",
                    "version": "1.4",
                    "body": [
                        {
                            "type": "TextBlock",
                            "text": summary_line(job),
                            "weight": "Bolder",
                            "wrap": True,
                        }
                    ],
                    "actions": [
                        {
                            "type": "Action.OpenUrl",
                            "title": "View result",
                            "url": links.page(job.id),
                        }
                    ],
                },
            }
        ],
    }


def owed_deliveries(
    job: Job,
    event_type: str,
    event_id: str,
    channels: OwnerChannels | None,
    endpoints: list[Endpoint],
    *,
    links: Links,
    inline_limit: int,
) -> list[OwedDelivery]:
    """Everything one job event owes: its callback, the owner's subscribed endpoints, and
    e-mail/Slack/Teams as the job asked (`notify`) or the owner's defaults say."""
    owed: list[OwedDelivery] = []
    body = webhook_body(job, event_type, event_id, links, inline_limit)
    if job.callback_url:
        owed.append(OwedDelivery("webhook", job.callback_url, None, body))
    for endpoint in endpoints:
        if event_type in endpoint.event_types and endpoint.url != job.callback_url:
            owed.append(OwedDelivery("webhook", endpoint.url, endpoint.id, body))
    wishes = job.notify or {}
    by_default = channels is not None and event_type in channels.event_types
    emails = list(wishes.get("email") or [])
    if channels is not None and by_default:
        emails += channels.emails
    for address in dict.fromkeys(emails):
        owed.append(OwedDelivery("email", address, None, email_message(job, links, address)))
    for channel, url_of, message in (
        ("slack", "slack_webhook_url", slack_message),
        ("teams", "teams_webhook_url", teams_message),
    ):
        url = getattr(channels, url_of) if channels is not None else None
        if url and (wishes.get(channel) or by_default):
            owed.append(OwedDelivery(channel, url, None, message(job, links)))
    return owed
