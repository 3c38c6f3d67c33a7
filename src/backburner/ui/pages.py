"""What every dashboard page shares: templates, the signed-in person, how times read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from fastapi.templating import Jinja2Templates

from backburner.api.auth import SESSION_COOKIE, KeyCache, Principal, resolve_key
from backburner.api.state import services
from backburner.errors import Forbidden
from backburner.store import JobStatus
from backburner.store import events as events_store
from backburner.ui.formats import duration, usd, utc
from backburner.ui.results import cell

templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))

STATUS_LABELS = {
    JobStatus.PENDING: "Queued / Waiting to start",
    JobStatus.RUNNING: "Processing / In progress",
    JobStatus.SUCCEEDED: "Completed",
    JobStatus.FAILED: "Failed \u2013 Retry",
    JobStatus.CANCELED: "Canceled",
}


templates.env.filters.update(duration=duration, usd=usd, utc=utc, cell=cell)
# The same names for the pages' live updates.
templates.env.globals["js_labels"] = {
    status.value: label for status, label in STATUS_LABELS.items()
}
templates.env.globals["labels"] = STATUS_LABELS


async def page_principal(request: Request) -> Principal | None:
    secret = request.cookies.get(SESSION_COOKIE)
    if not secret:
        return None
    cache: KeyCache = request.app.state.key_cache
    principal = await resolve_key(services(request), cache, secret)
    if principal is not None:
        request.state.key_id = principal.key_id
        # Read before the page's data: the page's live stream starts here, so nothing that
        # happens while the page renders and loads is missed.
        request.state.live_after = await events_store.latest_event_id(services(request).db)
    return principal


def same_origin(request: Request) -> None:
    """Forms post with the session cookie; besides SameSite=Strict, refuse any post whose
    Origin is not this very origin: another site, another port of this host, a sandboxed
    frame (`null`) or no Origin at all (every browser sends one with a POST)."""
    origin = request.headers.get("origin")
    if origin != f"{request.url.scheme}://{request.url.netloc}":
        raise Forbidden("this form was not posted from this dashboard")


def safe_next(value: str | None) -> str:
    """Where to go after signing in: a path of this dashboard, else the start page (never
    another site: `//evil.example`, `/\\evil.example` and `https://…` all become `/`)."""
    if (
        not value
        or not value.startswith("/")
        or value.startswith(("//", "/\\"))
        or len(value) > 2000
        or any(ord(char) < 32 or char == "\\" for char in value)
    ):
        return "/"
    return value


def wanted_page(request: Request) -> str:
    """The page a person asked for before being asked to sign in (GETs only)."""
    if request.method != "GET":
        return "/"
    query = "&".join(
        f"{name}={value}"
        for name, value in request.query_params.multi_items()
        if name not in ("token", "part")
    )
    return safe_next(request.url.path + (f"?{query}" if query else ""))


def sign_in_page(request: Request, message: str | None = None, status: int = 200) -> Response:
    """The sign-in form; once signed in, the person lands on the page they asked for."""
    wanted = request.query_params.get("next") if request.url.path == "/" else None
    next_page = safe_next(wanted) if wanted else wanted_page(request)
    return templates.TemplateResponse(
        request, "signin.html", {"message": message, "next": next_page}, status_code=status
    )


def page(
    request: Request,
    principal: Principal,
    template: str,
    context: dict[str, Any],
    status: int = 200,
) -> Response:
    return templates.TemplateResponse(
        request, template, {"principal": principal, **context}, status_code=status
    )


def not_found(request: Request, principal: Principal | None, what: str) -> Response:
    return templates.TemplateResponse(
        request, "notfound.html", {"principal": principal, "what": what}, status_code=404
    )
