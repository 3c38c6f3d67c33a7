"""Job types: what a job is, how it is validated, run, retried and timed out.

Register a type with the decorator:

    registry = JobRegistry()

    @registry.job_type("translate", expected_duration=30, timeout=600)
    async def translate(ctx: JobContext, payload: TranslateInput) -> TranslateOutput:
        ...

The input and output models are read from the handler's annotations. Packages can ship
types through the `backburner.job_types` entry point (a function taking the registry).
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import logging
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from importlib.metadata import entry_points
from typing import Any, TypeVar, get_type_hints

from pydantic import BaseModel

from backburner.errors import UnknownJobType
from backburner.jobs.context import JobContext

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "backburner.job_types"

Handler = Callable[[JobContext, Any], Coroutine[Any, Any, Any]]
H = TypeVar("H", bound=Callable[..., Coroutine[Any, Any, Any]])


@dataclass(frozen=True)
class RetryPolicy:
    """When a failed attempt runs again. Transient errors (timeouts, network errors, a
    provider that stayed unavailable, and errors the type names in `retry_on`) retry with
    exponential backoff and jitter. Errors of the handler's own code (ValueError,
    KeyError, ...) are permanent unless named in `retry_on` or `retry_unknown_errors` is
    set. Provider throttling (429) and blips (5xx) are waited out inside the attempt and
    never count here."""

    max_attempts: int = 5
    base_delay: float = 2.0
    max_delay: float = 600.0
    jitter: float = 0.5
    retry_on_timeout: bool = False
    retry_unknown_errors: bool = False
    retry_on: tuple[type[BaseException], ...] = ()

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter is a fraction between 0 and 1")


@dataclass(frozen=True)
class JobType:
    name: str
    handler: Handler
    input_model: type[BaseModel]
    output_model: type[BaseModel]
    description: str = ""
    expected_duration: float = 60.0
    timeout: float = 3600.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    # Seconds a caller can usually wait for this type's result (None: as soon as possible);
    # a job's own `deadline_seconds` overrides it.
    default_deadline: float | None = None
    # Model calls on the longest chain one after another (map then reduce: 2), so a
    # deadline is shared out between them when choosing completion windows.
    sequential_model_calls: int = 1
    # Document ids a payload refers to, so the API can check them before enqueueing.
    referenced_documents: Callable[[Any], list[str]] | None = None
    # Names what the type asks the model (instructions, schemas): evaluation runs record
    # it so scores can be told apart by prompt. Unset: a digest of the handler's module.
    prompt_version: str | None = None
    # How big a payload is, in `size_unit`s, from the payload and the characters of the
    # documents it names: the ETA scales the type's history by it. With no history yet,
    # a job is expected to take `expected_duration` plus `seconds_per_unit` per unit.
    size_of: Callable[[Any, Mapping[str, int]], float] | None = None
    size_unit: str = ""
    seconds_per_unit: float = 0.0

    def prompt_digest(self) -> str:
        """`prompt_version`, else the first 12 hex digits of the SHA-256 of the source of
        the module the handler is in (where its prompts live)."""
        if self.prompt_version is not None:
            return self.prompt_version
        module = inspect.getmodule(self.handler)
        try:
            source = inspect.getsource(module) if module is not None else self.name
        except (OSError, TypeError):
            source = self.name
        return hashlib.sha256(source.encode()).hexdigest()[:12]

    def deadline(self, start: datetime, seconds: float | None) -> datetime | None:
        """When a job starting at `start` is due: after `seconds`, else the type's default
        deadline, else never."""
        seconds = seconds or self.default_deadline
        return None if seconds is None else start + timedelta(seconds=seconds)

    def attempt_timeout(self, start: datetime, deadline: datetime | None) -> float:
        """A job that may wait hours for a discounted model window must not time out first:
        its attempts may run until the deadline when that is later than the type's
        timeout."""
        if deadline is None:
            return self.timeout
        return max(self.timeout, (deadline - start).total_seconds())

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "expected_duration_seconds": self.expected_duration,
            "timeout_seconds": self.timeout,
            "max_attempts": self.retry.max_attempts,
            "default_deadline_seconds": self.default_deadline,
            "size_unit": self.size_unit or None,
            "input_schema": self.input_model.model_json_schema(),
            "output_schema": self.output_model.model_json_schema(),
        }


class JobRegistry:
    def __init__(self) -> None:
        self._types: dict[str, JobType] = {}

    def register(self, job_type: JobType) -> JobType:
        if job_type.name in self._types:
            raise ValueError(f"job type {job_type.name!r} is registered twice")
        self._types[job_type.name] = job_type
        return job_type

    def job_type(
        self,
        name: str,
        *,
        description: str | None = None,
        expected_duration: float = 60.0,
        timeout: float = 3600.0,
        retry: RetryPolicy | None = None,
        referenced_documents: Callable[[Any], list[str]] | None = None,
        default_deadline: float | None = None,
        sequential_model_calls: int = 1,
        size_of: Callable[[Any, Mapping[str, int]], float] | None = None,
        size_unit: str = "",
        seconds_per_unit: float = 0.0,
    ) -> Callable[[H], H]:
        """Register an `async def handler(ctx, payload: In) -> Out` as a job type."""

        def decorate(handler: H) -> H:
            input_model, output_model = _models_of(handler)
            self.register(
                JobType(
                    name=name,
                    handler=handler,
                    input_model=input_model,
                    output_model=output_model,
                    description=description or inspect.getdoc(handler) or "",
                    expected_duration=expected_duration,
                    timeout=timeout,
                    retry=retry or RetryPolicy(),
                    referenced_documents=referenced_documents,
                    default_deadline=default_deadline,
                    sequential_model_calls=sequential_model_calls,
                    size_of=size_of,
                    size_unit=size_unit,
                    seconds_per_unit=seconds_per_unit,
                )
            )
            return handler

        return decorate

    def get(self, name: str) -> JobType:
        try:
            return self._types[name]
        except KeyError:
            raise UnknownJobType(name) from None

    def find(self, name: str | None) -> JobType | None:
        """The type of that name, or None (a job of a type this process does not have)."""
        return self._types.get(name) if name is not None else None

    def __contains__(self, name: object) -> bool:
        return name in self._types

    def names(self) -> list[str]:
        return sorted(self._types)

    def all(self) -> list[JobType]:
        return [self._types[name] for name in self.names()]


def _models_of(handler: Callable[..., Any]) -> tuple[type[BaseModel], type[BaseModel]]:
    hints = get_type_hints(handler)
    params = list(inspect.signature(handler).parameters)
    if len(params) != 2:
        raise TypeError(f"{handler.__name__} must take (ctx, payload)")
    input_model = hints.get(params[1])
    output_model = hints.get("return")
    for role, model in (("payload", input_model), ("return", output_model)):
        if not (inspect.isclass(model) and issubclass(model, BaseModel)):
            raise TypeError(f"{handler.__name__}: the {role} annotation must be a pydantic model")
    return input_model, output_model  # type: ignore[return-value]


def build_registry(
    plugin_modules: Iterable[str] = (), *, entry_points_too: bool = True
) -> JobRegistry:
    """The registry with every installed job type: entry points (the built-ins come this
    way too), then modules named in settings, each exposing `register(registry)`."""
    registry = JobRegistry()
    if entry_points_too:
        for entry in entry_points(group=ENTRY_POINT_GROUP):
            entry.load()(registry)
    else:
        from backburner.jobs.types import register_builtin_types

        register_builtin_types(registry)
    for module_name in plugin_modules:
        module = importlib.import_module(module_name)
        register = getattr(module, "register", None)
        if register is None:
            raise ImportError(f"plugin module {module_name} has no register(registry) function")
        register(registry)
    return registry
