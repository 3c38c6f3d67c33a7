"""What the API's routes share: settings, database, registry, provider, the PDF reader
pool, object storage, clock."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Request

from backburner.clock import utcnow
from backburner.config import Settings
from backburner.jobs.parsing import DocumentParser
from backburner.jobs.registry import JobRegistry
from backburner.providers.base import Provider
from backburner.storage import Objects
from backburner.store import Database


@dataclass
class Services:
    settings: Settings
    db: Database
    registry: JobRegistry
    provider: Provider
    parser: DocumentParser
    objects: Objects
    clock: Callable[[], datetime] = field(default=utcnow)
    # Embedded services (worker, dispatcher) that crashed: the process is not ready.
    crashed: list[str] = field(default_factory=list)


def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


async def _services(request: Request) -> Services:
    # A dependency that is a plain function runs in a worker thread, a hand-off per
    # request for a dictionary lookup: this one runs on the event loop.
    return services(request)


ServicesDep = Annotated[Services, Depends(_services)]
