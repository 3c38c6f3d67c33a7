"""What the API's routes share: settings, database, registry, provider, clock."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Request

from backburner.config import Settings
from backburner.jobs.registry import JobRegistry
from backburner.providers.base import Provider
from backburner.store import Database


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Services:
    settings: Settings
    db: Database
    registry: JobRegistry
    provider: Provider
    clock: Callable[[], datetime] = field(default=utcnow)


def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


ServicesDep = Annotated[Services, Depends(services)]
