"""The provider protocol, shaped like the OpenAI Responses API in background mode.

`submit` creates a background response and returns at once (status `queued` or
`in_progress`); `retrieve` polls it; `cancel` stops it; `complete` is the synchronous
(non-background) call for the quick path. The worker never knows which provider it has.
"""

from __future__ import annotations

import json
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

ResponseStatus = Literal["queued", "in_progress", "completed", "failed", "cancelled", "incomplete"]
TERMINAL_RESPONSE_STATUSES: frozenset[str] = frozenset(
    {"completed", "failed", "cancelled", "incomplete"}
)


class FunctionTool(BaseModel):
    """A function the model may ask us to run (a "GPT action")."""

    type: Literal["function"] = "function"
    name: str
    description: str = ""
    parameters: dict[str, Any]
    strict: bool = True


class JsonSchemaFormat(BaseModel):
    """Ask for JSON output matching `json_schema` (OpenAI's `text.format`)."""

    model_config = ConfigDict(populate_by_name=True)

    type: Literal["json_schema"] = "json_schema"
    name: str
    json_schema: dict[str, Any] = Field(alias="schema")
    strict: bool = True


def is_strict_compatible(schema: dict[str, Any]) -> bool:
    """Whether OpenAI's strict structured outputs accept `schema`: every object closes its
    properties (`additionalProperties: false`) and requires all of them."""
    defs = schema.get("$defs", {})

    def check(node: Any) -> bool:
        if isinstance(node, list):
            return all(check(item) for item in node)
        if not isinstance(node, dict):
            return True
        if "$ref" in node:
            return True  # the definitions are checked once, below
        if node.get("type") == "object" or "properties" in node:
            properties = node.get("properties", {})
            if node.get("additionalProperties") is not False:
                return False
            if set(node.get("required", [])) != set(properties):
                return False
        return all(check(value) for key, value in node.items() if key != "$defs")

    return check(schema) and all(check(definition) for definition in defs.values())


class InputMessage(BaseModel):
    type: Literal["message"] = "message"
    role: Literal["user", "system", "developer", "assistant"] = "user"
    content: str


class FunctionCallOutput(BaseModel):
    type: Literal["function_call_output"] = "function_call_output"
    call_id: str
    output: str


InputItem = InputMessage | FunctionCallOutput


class ModelRequest(BaseModel):
    """One model call, as a handler describes it."""

    model: str
    input: str | list[InputItem]
    instructions: str | None = None
    text_format: JsonSchemaFormat | None = None
    tools: list[FunctionTool] = Field(default_factory=list)
    previous_response_id: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    max_output_tokens: int | None = None
    # Background execution window: "soonest", or the discounted "2h" / "8h".
    completion_window: Literal["soonest", "2h", "8h"] | None = None
    service_tier: str | None = None
    # Groups related background requests for the provider's queue priority (sent only
    # with a discounted completion window); it carries no history.
    continuation_id: str | None = None

    def input_items(self) -> list[InputItem]:
        if isinstance(self.input, str):
            return [InputMessage(content=self.input)]
        return list(self.input)

    def text_chars(self) -> int:
        """Characters of text the request sends, for estimating its tokens."""
        items = self.input_items()
        sent = sum(
            len(item.content if isinstance(item, InputMessage) else item.output) for item in items
        )
        return sent + len(self.instructions or "")


class Usage(BaseModel):
    input_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0

    def as_counts(self) -> dict[str, int]:
        return self.model_dump()


class FunctionCall(BaseModel):
    call_id: str
    name: str
    arguments: str

    def parsed_arguments(self) -> Any:
        return json.loads(self.arguments)


class ResponseSnapshot(BaseModel):
    """What a provider says about one response at one moment."""

    id: str
    status: ResponseStatus
    output_text: str = ""
    function_calls: list[FunctionCall] = Field(default_factory=list)
    usage: Usage | None = None
    error_code: str | None = None
    error_message: str | None = None
    incomplete_reason: str | None = None

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_RESPONSE_STATUSES

    def stored_output(self) -> dict[str, Any]:
        """The part of a finished response we keep, so a replay needs no provider call."""
        return {
            "output_text": self.output_text,
            "function_calls": [call.model_dump() for call in self.function_calls],
        }

    @classmethod
    def from_stored(
        cls,
        response_id: str,
        status: ResponseStatus,
        stored: dict[str, Any],
        usage: Usage | None = None,
    ) -> ResponseSnapshot:
        return cls(
            id=response_id,
            status=status,
            output_text=stored.get("output_text", ""),
            function_calls=[FunctionCall(**c) for c in stored.get("function_calls", [])],
            usage=usage,
        )


# `error.code`s of a failed response that say nothing about the request: the provider had
# a problem, and the same request asked again may well succeed.
TRANSIENT_FAILURE_CODES = frozenset({"server_error", "rate_limit_exceeded"})


def failure_is_transient(snapshot: ResponseSnapshot) -> bool:
    """Whether a failed response is worth asking again (its code is the provider's problem,
    not the prompt's); content, prompt and unknown codes are not."""
    return snapshot.status == "failed" and snapshot.error_code in TRANSIENT_FAILURE_CODES


class Provider(Protocol):
    """What a model provider must do for Backburner."""

    name: str

    async def submit(self, request: ModelRequest) -> ResponseSnapshot:
        """Create a background response; raises a ProviderError subclass on failure."""
        ...

    async def retrieve(self, response_id: str) -> ResponseSnapshot:
        """The response's current state; raises ResponseLost if the id is unknown."""
        ...

    async def cancel(self, response_id: str) -> ResponseSnapshot:
        """Stop a response; cancelling a finished one returns it unchanged."""
        ...

    async def delete(self, response_id: str) -> None:
        """Delete a stored response at the provider; one it no longer knows is gone already
        (no error). Raises a ProviderError subclass when the provider cannot answer."""
        ...

    async def complete(self, request: ModelRequest) -> ResponseSnapshot:
        """A synchronous (non-background) call, answered in full."""
        ...

    async def aclose(self) -> None: ...
