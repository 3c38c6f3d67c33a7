"""Notifications: deliveries of a job, redelivery, the owner's webhook secret, endpoints
and default channels."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Response, status
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from backburner.api.auth import CurrentActor, CurrentPrincipal
from backburner.api.enqueue import check_callable
from backburner.api.openapi import problems
from backburner.api.routes.jobs import owned_job
from backburner.api.schemas import DeliveryView, EmailAddress
from backburner.api.state import ServicesDep
from backburner.notify.signing import new_secret
from backburner.store import channels as channels_store
from backburner.store import outbox as outbox_store
from backburner.store.channels import EVENT_TYPES, OwnerChannels

router = APIRouter(tags=["notifications"])


def known_event_types(value: list[str]) -> list[str]:
    unknown = sorted(set(value) - set(EVENT_TYPES))
    if unknown:
        raise ValueError(f"unknown event types {unknown}; choose from {list(EVENT_TYPES)}")
    return sorted(set(value))


EventTypes = Annotated[list[str], AfterValidator(known_event_types)]


class DeliveryList(BaseModel):
    items: list[DeliveryView]


class SecretView(BaseModel):
    secret: str


class RotatedSecret(BaseModel):
    secret: str
    previous_valid_until: datetime


class EndpointCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=8, max_length=2000)
    event_types: EventTypes = Field(default_factory=lambda: list(EVENT_TYPES), min_length=1)


class EndpointView(BaseModel):
    endpoint_id: str
    url: str
    event_types: list[str]
    enabled: bool
    disabled_reason: str | None
    created_at: datetime


class EndpointList(BaseModel):
    items: list[EndpointView]


class ChannelsBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    emails: list[EmailAddress] = Field(default_factory=list, max_length=20)
    slack_webhook_url: str | None = Field(default=None, max_length=2000)
    teams_webhook_url: str | None = Field(default=None, max_length=2000)
    # Events every job of the owner is announced on through these channels; empty: only
    # jobs whose `notify` asks.
    event_types: EventTypes = Field(default_factory=list)


@router.get("/api/jobs/{job_id}/deliveries", response_model=DeliveryList)
async def job_deliveries(job_id: str, svc: ServicesDep, principal: CurrentPrincipal) -> Any:
    """Every notification the job's end owed, with each attempt (status code, latency,
    error, the start of the receiver's answer)."""
    job = await owned_job(svc, principal, job_id)
    found = await outbox_store.list_deliveries(svc.db, job.id)
    return DeliveryList(items=[DeliveryView.of(d, attempts) for d, attempts in found])


@router.post(
    "/api/deliveries/{delivery_id}/redeliver",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=DeliveryView,
    responses=problems(409),
)
async def redeliver(delivery_id: str, svc: ServicesDep, principal: CurrentPrincipal) -> Any:
    """Send a delivery again, with the same event id (receivers may drop it as a duplicate)."""
    delivery = await outbox_store.redeliver(
        svc.db,
        delivery_id,
        owner=principal.visible_owner(),
        now=svc.clock(),
        retry_for=timedelta(hours=svc.settings.notify_retry_hours),
    )
    return DeliveryView.of(delivery)


@router.get("/api/webhooks/secret", response_model=SecretView)
async def webhook_secret(svc: ServicesDep, principal: CurrentPrincipal) -> Any:
    """The `whsec_` secret our webhooks to you are signed with (Standard Webhooks)."""
    secret = await channels_store.current_secret(
        svc.db, principal.owner, now=svc.clock(), make=new_secret
    )
    return SecretView(secret=secret)


@router.post("/api/webhooks/secret/rotate", response_model=RotatedSecret)
async def rotate_webhook_secret(
    svc: ServicesDep, principal: CurrentPrincipal, actor: CurrentActor
) -> Any:
    """A new secret; webhooks carry signatures by both until the old one expires."""
    secret, until = await channels_store.rotate_secret(
        svc.db,
        principal.owner,
        now=svc.clock(),
        overlap=timedelta(hours=svc.settings.webhook_secret_overlap_hours),
        make=new_secret,
        actor=actor,
    )
    return RotatedSecret(secret=secret, previous_valid_until=until)


@router.get("/api/webhook-endpoints", response_model=EndpointList)
async def list_endpoints(svc: ServicesDep, principal: CurrentPrincipal) -> Any:
    found = await channels_store.list_endpoints(svc.db, principal.owner)
    return EndpointList(items=[_endpoint_view(e) for e in found])


@router.post(
    "/api/webhook-endpoints",
    status_code=201,
    response_model=EndpointView,
    responses=problems(409),
)
async def add_endpoint(body: EndpointCreate, svc: ServicesDep, principal: CurrentPrincipal) -> Any:
    """Announce every job of yours that ends with one of `event_types` to `url`."""
    check_callable(svc, body.url, ("body", "url"))
    endpoint = await channels_store.add_endpoint(
        svc.db,
        principal.owner,
        body.url,
        body.event_types,
        now=svc.clock(),
        limit=svc.settings.max_webhook_endpoints,
    )
    return _endpoint_view(endpoint)


@router.delete("/api/webhook-endpoints/{endpoint_id}", status_code=204)
async def delete_endpoint(
    endpoint_id: str, svc: ServicesDep, principal: CurrentPrincipal
) -> Response:
    await channels_store.delete_endpoint(svc.db, endpoint_id, owner=principal.owner)
    return Response(status_code=204)


def _endpoint_view(e: channels_store.Endpoint) -> EndpointView:
    return EndpointView(
        endpoint_id=e.id,
        url=e.url,
        event_types=e.event_types,
        enabled=e.enabled,
        disabled_reason=e.disabled_reason,
        created_at=e.created_at,
    )


@router.get("/api/notifications/channels", response_model=ChannelsBody)
async def get_channels(svc: ServicesDep, principal: CurrentPrincipal) -> Any:
    found = await channels_store.get_channels(svc.db, principal.owner)
    if found is None:
        return ChannelsBody()
    return ChannelsBody(**{k: v for k, v in vars(found).items() if k != "owner"})


@router.put("/api/notifications/channels", response_model=ChannelsBody)
async def put_channels(body: ChannelsBody, svc: ServicesDep, principal: CurrentPrincipal) -> Any:
    """Your default e-mail addresses and Slack/Teams incoming webhooks."""
    for field in ("slack_webhook_url", "teams_webhook_url"):
        url = getattr(body, field)
        if url is not None:
            check_callable(svc, url, ("body", field))
    await channels_store.set_channels(
        svc.db,
        OwnerChannels(
            owner=principal.owner,
            emails=list(body.emails),
            slack_webhook_url=body.slack_webhook_url,
            teams_webhook_url=body.teams_webhook_url,
            event_types=list(body.event_types),
        ),
        now=svc.clock(),
    )
    return body
