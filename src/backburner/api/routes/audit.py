"""GET /api/audit: the audit trail. Admins read everything and filter it; members read the
events that concern their own data (their jobs, documents, keys, secret, limits)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from backburner.api.auth import CurrentPrincipal
from backburner.api.pagination import decode_position, encode_position
from backburner.api.schemas import Moment
from backburner.api.state import ServicesDep
from backburner.store import audit as audit_store

router = APIRouter(tags=["audit"])


class AuditActorView(BaseModel):
    kind: str
    key_id: str | None
    owner: str | None
    role: str | None
    client_address: str | None
    user_agent: str | None
    request_id: str | None


class AuditEventView(BaseModel):
    id: int
    at: datetime
    actor: AuditActorView
    action: str
    target_type: str
    target_id: str
    owner: str | None
    detail: dict[str, Any] | None

    @classmethod
    def of(cls, event: audit_store.AuditEvent) -> AuditEventView:
        return cls(
            id=event.id,
            at=event.at,
            actor=AuditActorView(**vars(event.actor)),
            action=event.action,
            target_type=event.target_type,
            target_id=event.target_id,
            owner=event.owner,
            detail=event.detail,
        )


class AuditList(BaseModel):
    items: list[AuditEventView]
    next_cursor: str | None


@router.get("/api/audit", response_model=AuditList)
async def audit_events(
    svc: ServicesDep,
    principal: CurrentPrincipal,
    actor: Annotated[str | None, Query(max_length=36, description="An actor's key id")] = None,
    owner: Annotated[
        str | None, Query(max_length=200, description="Admins: whose data it concerns")
    ] = None,
    action: audit_store.Action | None = None,
    target: Annotated[
        str | None, Query(max_length=200, description="A job, document, key or owner id")
    ] = None,
    since: Annotated[Moment | None, Query()] = None,
    until: Annotated[Moment | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(max_length=40)] = None,
) -> AuditList:
    """Who did what to whose data, newest first, keyset-paginated."""
    scope = principal.visible_owner() if principal.visible_owner() is not None else owner
    where = audit_store.AuditFilter(
        owner=scope,
        actor_key_id=actor,
        action=action.value if action else None,
        target_id=target,
        since=since,
        until=until,
    )
    before = decode_position(cursor) if cursor is not None else None
    events, more = await audit_store.list_events(svc.db, where, before_id=before, limit=limit)
    return AuditList(
        items=[AuditEventView.of(event) for event in events],
        next_cursor=encode_position(events[-1].id) if more and events else None,
    )
