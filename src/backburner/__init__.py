"""Backburner: long AI work, off the request path.

What a job type's author needs is importable from here:

    from backburner import JobContext, JobRegistry, ModelRequest, RetryPolicy

    registry = JobRegistry()

    @registry.job_type("translate", expected_duration=30)
    async def translate(ctx: JobContext, payload: TranslateIn) -> TranslateOut:
        answer = await ctx.respond_json("translate", ModelRequest(...), TranslateOut)
        ...

The names below are the public surface; `tests/unit/test_exported_members.py` pins them.
"""

from backburner.config import Settings
from backburner.errors import (
    BackburnerError,
    InvalidInput,
    InvalidModelOutput,
    JobError,
    PermanentError,
    Retry,
)
from backburner.jobs.concurrency import gather_all
from backburner.jobs.context import JobContext, ToolFunction
from backburner.jobs.registry import JobRegistry, JobType, RetryPolicy, build_registry
from backburner.providers.base import (
    FunctionCall,
    FunctionCallOutput,
    FunctionTool,
    InputMessage,
    JsonSchemaFormat,
    ModelRequest,
    ResponseSnapshot,
    Usage,
)
from backburner.store.models import Document

__all__ = [
    "BackburnerError",
    "Document",
    "FunctionCall",
    "FunctionCallOutput",
    "FunctionTool",
    "InputMessage",
    "InvalidInput",
    "InvalidModelOutput",
    "JobContext",
    "JobError",
    "JobRegistry",
    "JobType",
    "JsonSchemaFormat",
    "ModelRequest",
    "PermanentError",
    "ResponseSnapshot",
    "Retry",
    "RetryPolicy",
    "Settings",
    "ToolFunction",
    "Usage",
    "build_registry",
    "gather_all",
]
