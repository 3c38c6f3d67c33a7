"""Who is calling: API keys (Bearer) belonging to an owner, with a role."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from backburner.api.state import Services, ServicesDep
from backburner.api.throttle import KeyThrottle, SignInGuard
from backburner.errors import Forbidden, Unauthorized
from backburner.store import Role
from backburner.store import keys as keys_store
from backburner.store.audit import Actor

SESSION_COOKIE = "backburner_session"


@dataclass(frozen=True)
class Principal:
    owner: str
    role: Role
    key_id: str

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN

    def visible_owner(self) -> str | None:
        """The owner filter for queries: admins see everyone's jobs, members their own."""
        return None if self.is_admin else self.owner


class KeyCache:
    """Remembers verified keys briefly, so a burst of requests costs one lookup.
    A revoked key stops working within `ttl` seconds."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._entries: dict[str, tuple[Principal, float]] = {}

    def get(self, secret: str) -> Principal | None:
        entry = self._entries.get(secret)
        if entry is None or entry[1] < time.monotonic():
            return None
        return entry[0]

    def forget(self, secret: str) -> None:
        self._entries.pop(secret, None)

    def put(self, secret: str, principal: Principal) -> None:
        if len(self._entries) > 10_000:
            self._entries.clear()
        self._entries[secret] = (principal, time.monotonic() + self.ttl)


def bearer_token(request: Request) -> str | None:
    """The API key of the `Authorization` header. The API takes nothing else: the
    dashboard's session cookie is for the dashboard's own routes, so a page on another
    origin cannot act on the API with a signed-in user's cookie (CSRF)."""
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("use 'Authorization: Bearer <api key>'")
    return token.strip()


async def resolve_key(svc: Services, cache: KeyCache, secret: str) -> Principal | None:
    """Who an API key, or a dashboard session token, belongs to (None: nobody now)."""
    cached = cache.get(secret)
    if cached is not None:
        return cached
    if secret.startswith(keys_store.SESSION_PREFIX):
        key = await keys_store.find_session_key(svc.db, secret, now=svc.clock())
    else:
        key = await keys_store.find_active_key(svc.db, secret)
    if key is None:
        return None
    principal = Principal(owner=key.owner, role=key.role, key_id=key.id)
    cache.put(secret, principal)
    return principal


def client_address(request: Request) -> str:
    """The caller's address (behind a trusted proxy, the one it forwarded)."""
    return request.client.host if request.client else "unknown"


async def guarded_key(request: Request, svc: Services, secret: str) -> Principal | None:
    """Whose API key `secret` is (None: no one's — a session token is not a key either),
    with guessing throttled per client address: `TooManyRequests` while the address has
    failed too often, and each miss counted. The API and the dashboard's sign-in both ask
    this way."""
    guard: SignInGuard = request.app.state.sign_in_guard
    address = client_address(request)
    guard.check(address)
    principal = None
    if not secret.startswith(keys_store.SESSION_PREFIX):
        principal = await resolve_key(svc, request.app.state.key_cache, secret)
    if principal is None:
        guard.failed(address)
    return principal


async def current_principal(request: Request, svc: ServicesDep) -> Principal:
    """Who calls the API: a Bearer key, within its request rate. Unknown keys count
    against the caller's address."""
    secret = bearer_token(request)
    if secret is None or secret.startswith(keys_store.SESSION_PREFIX):
        raise Unauthorized("an API key is required: 'Authorization: Bearer <api key>'")
    principal = await guarded_key(request, svc, secret)
    if principal is None:
        raise Unauthorized("the API key is unknown or revoked")
    request.state.key_id = principal.key_id
    throttle: KeyThrottle = request.app.state.key_throttle
    await throttle.admit(principal.key_id, principal.owner, svc.clock())
    return principal


def actor_of(request: Request, principal: Principal | None) -> Actor:
    """The audit trail's actor for a request: its key (none yet when signing in), address,
    user agent and request id."""
    return Actor(
        kind="key",
        key_id=principal.key_id if principal else None,
        owner=principal.owner if principal else None,
        role=principal.role.value if principal else None,
        client_address=client_address(request)[:64],
        user_agent=(request.headers.get("user-agent") or "")[:300] or None,
        request_id=getattr(request.state, "request_id", None),
    )


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


async def admin_principal(principal: CurrentPrincipal) -> Principal:
    """The caller, if an admin (403 otherwise)."""
    if not principal.is_admin:
        raise Forbidden("this needs an admin key")
    return principal


AdminPrincipal = Annotated[Principal, Depends(admin_principal)]


async def current_actor(request: Request, principal: CurrentPrincipal) -> Actor:
    return actor_of(request, principal)


CurrentActor = Annotated[Actor, Depends(current_actor)]
"""The caller as the audit trail records it (authenticates, as CurrentPrincipal does)."""
