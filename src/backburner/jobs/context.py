"""What a handler may ask of its job: the context protocol the worker implements.

Handlers depend on this protocol, not on the worker, so the jobs room never reaches up.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel

from backburner.config import Settings
from backburner.providers.base import ModelRequest, ResponseSnapshot
from backburner.store.models import Document

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

ToolFunction = Callable[..., Awaitable[Any] | Any]


class JobContext(Protocol):
    """A running job, as its handler sees it."""

    job_id: str
    owner: str
    attempt: int

    async def step(self, key: str, fn: Callable[..., Awaitable[T] | T], *args: Any) -> T:
        """Run `fn(*args)` once for this job and remember its (JSON) result; on a re-run
        after a crash or retry, return the remembered result without calling `fn`."""
        ...

    async def respond(
        self,
        key: str,
        request: ModelRequest,
        *,
        tools: dict[str, ToolFunction] | None = None,
        max_tool_rounds: int = 5,
    ) -> ResponseSnapshot:
        """Make one model call as a background response (its id persisted before waiting);
        with `tools`, answer the model's function calls until it gives its final answer."""
        ...

    async def respond_json(
        self,
        key: str,
        request: ModelRequest,
        output_model: type[M],
        *,
        tools: dict[str, ToolFunction] | None = None,
    ) -> M:
        """`respond` asking for JSON matching `output_model`, validated on the way back."""
        ...

    async def progress(self, fraction: float, message: str | None = None) -> None:
        """Report how far the job is (0..1), with an optional human message."""
        ...

    async def documents(self, ids: Sequence[str]) -> list[Document]:
        """The owner's documents with these ids, in the order asked."""
        ...

    @property
    def model(self) -> str:
        """The model name configured for this job's calls."""
        ...

    @property
    def settings(self) -> Settings:
        """The service's settings, typed (e.g. `ctx.settings.classify_batch_size`)."""
        ...
