"""Text no one can store or show is refused at the door: NUL bytes, lone surrogates,
invalid UTF-8, non-finite numbers and deep nesting, in paths, queries and bodies.

PostgreSQL refuses NUL in text and JSON (the request answered 500); SQLite stores a lone
surrogate and then every read of that row fails. A JSON parser accepts both as escapes
(`\\u0000`, `\\ud800`), and `NaN` or `1e999` as numbers, so each JSON body is read once
here, strictly, before any route sees it. The checks are plain functions; the middleware
only applies them and answers 400/422 problem+json.
"""

from __future__ import annotations

import json
import math
from typing import Any
from urllib.parse import unquote_to_bytes

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backburner.api.problems import field_errors, problem
from backburner.errors import FieldProblem

MAX_DEPTH = 32
Location = tuple[str | int, ...]


class Refused(ValueError):
    def __init__(self, status: int, detail: str, loc: Location = ()) -> None:
        super().__init__(detail)
        self.status, self.detail, self.loc = status, detail, loc


def text_problem(value: str) -> str | None:
    """Why `value` cannot be stored as text, or None when it can."""
    if "\x00" in value:
        return "holds a NUL character"
    if not value.isascii():
        # UTF-8 has no surrogates: encoding fails exactly when one is there (a C pass over
        # the text instead of a Python one per character).
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "holds an unpaired surrogate (not valid Unicode)"
    return None


def decoded_component(raw: bytes, what: str) -> str:
    """A percent-encoded path or query component as text, refusing what cannot be text."""
    try:
        text = unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise Refused(400, f"the {what} is not valid UTF-8 once decoded") from None
    problem = text_problem(text)
    if problem:
        raise Refused(400, f"the {what} {problem}")
    return text


def check_url_text(raw_path: bytes, query: bytes) -> None:
    decoded_component(raw_path, "path")
    for pair in query.split(b"&"):
        name, _, value = pair.replace(b"+", b" ").partition(b"=")
        decoded_component(name, "query")
        decoded_component(value, "query")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("number out of range")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def parsed_json(body: bytes) -> Any:
    """The JSON document, or `Refused`: only finite numbers, only storable text, at most
    MAX_DEPTH levels deep."""
    try:
        document = json.loads(body, parse_float=_finite, parse_constant=_no_constant)
    except RecursionError:
        raise Refused(422, f"the JSON is nested more than {MAX_DEPTH} levels deep") from None
    except UnicodeDecodeError:
        raise Refused(400, "the body is not valid UTF-8") from None
    except ValueError as error:
        # The route's own parser words malformed JSON its way (400 "Malformed JSON");
        # here only the values it would have accepted are refused.
        if "number" in str(error) or "digits" in str(error):
            raise Refused(422, f"the JSON holds a number out of range: {error}") from None
        return None
    refused = _first_refusal(document, 1)
    if refused is not None:
        loc, detail = refused
        raise Refused(422, detail, loc)
    return document


def _first_refusal(value: Any, depth: int) -> tuple[Location, str] | None:
    """The first value of `value`, in document order (a key before its value), that cannot
    be stored or lies deeper than MAX_DEPTH: where it is (relative to `value`) and why.
    The location is put together only on the way back from a refusal, not for every value
    passed (a bulk create's thousand items made that a tenth of its time)."""
    if depth > MAX_DEPTH:
        return (), f"the JSON is nested more than {MAX_DEPTH} levels deep"
    if isinstance(value, str):
        problem = text_problem(value)
        return None if problem is None else ((), f"a text value {problem}")
    if isinstance(value, dict):
        for key, item in value.items():
            problem = text_problem(key)  # keys are text too
            if problem is not None:
                return (key,), f"a text value {problem}"
            found = _first_refusal(item, depth + 1)
            if found is not None:
                return (key, *found[0]), found[1]
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _first_refusal(item, depth + 1)
            if found is not None:
                return (index, *found[0]), found[1]
    return None


def _is_json(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-type":
            media: bytes = value.split(b";")[0].strip().lower()
            return media == b"application/json" or media.endswith(b"+json")
    return False


class InputGuard:
    """ASGI middleware applying the checks above to every HTTP request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            check_url_text(scope.get("raw_path") or scope["path"].encode(), scope["query_string"])
        except Refused as refused:
            await _send_problem(send, refused)
            return
        if not _is_json(scope) or scope["method"] in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        try:
            parsed_json(body)
        except Refused as refused:
            await _send_problem(send, refused)
            return
        await self.app(scope, _replay(body, receive), send)


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # what follows the body: a disconnect

    return replayed


async def _send_problem(send: Send, refused: Refused) -> None:
    errors = []
    if refused.status == 422:
        errors = field_errors([FieldProblem(("body", *refused.loc), refused.detail)])
    response = problem(refused.status, refused.detail, errors=errors)
    start = {"type": "http.response.start", "status": response.status_code}
    await send({**start, "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": response.body})
