"""The audit trail for admins (/audit): filter by action, owner, target and actor."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from backburner.api.state import services
from backburner.store import audit as audit_store
from backburner.ui.pages import not_found, page, page_principal, sign_in_page

router = APIRouter(include_in_schema=False)
PAGE = 100
ACTIONS = [action.value for action in audit_store.Action]


@router.get("/audit", response_class=HTMLResponse)
async def audit_page(
    request: Request,
    action: str | None = None,
    owner: str | None = None,
    target: str | None = None,
    actor: str | None = None,
    before: int | None = None,
) -> Response:
    principal = await page_principal(request)
    if principal is None:
        return sign_in_page(request, status=401)
    if not principal.is_admin:
        return not_found(request, principal, "page /audit")
    chosen = {
        "action": action if action in ACTIONS else None,
        "owner": (owner or "").strip()[:200] or None,
        "target": (target or "").strip()[:200] or None,
        "actor": (actor or "").strip()[:36] or None,
    }
    where = audit_store.AuditFilter(
        owner=chosen["owner"],
        actor_key_id=chosen["actor"],
        action=chosen["action"],
        target_id=chosen["target"],
    )
    svc = services(request)
    events, more = await audit_store.list_events(
        svc.db, where, before_id=before if before and before > 0 else None, limit=PAGE
    )
    older = None
    if more and events:
        query = {k: v for k, v in chosen.items() if v} | {"before": events[-1].id}
        older = f"/audit?{urlencode(query)}"
    return page(
        request,
        principal,
        "audit.html",
        {
            "events": events,
            "actions": ACTIONS,
            "chosen": chosen,
            "older": older,
            "retention_days": svc.settings.audit_retention_days,
        },
    )
