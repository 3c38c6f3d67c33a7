"""Where a request was reached, remembered per scheme, server, Host and root path: it must
say what Starlette says of the request itself, whatever the Host header holds."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import Request

from backburner.api.results import _reached_at, reached_at

HOSTS: list[bytes | None] = [
    None,
    b"example.com",
    b"example.com:8443",
    b"EXAMPLE.com:80",
    b"[::1]:8000",
    b"127.0.0.1",
    b"evil.example@127.0.0.1",
    b"a b",
    b"",
    b"example.com:notaport",
    b"example.com:99999999999999999999",
    "h\u00e9llo.example".encode("latin-1"),
    b"x" * 400,
]


def scope(host: bytes | None, *, scheme: str = "http", root_path: str = "") -> dict[str, Any]:
    return {
        "type": "http",
        "scheme": scheme,
        "server": ("10.0.0.7", 8000),
        "root_path": root_path,
        "path": f"{root_path}/api/jobs",
        "query_string": b"a=1",
        "method": "POST",
        "headers": [(b"content-type", b"application/json")]
        + ([] if host is None else [(b"host", host)]),
    }


@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize("scheme", ["http", "https"])
@pytest.mark.parametrize("root_path", ["", "/backburner"])
def test_where_a_request_was_reached_is_what_starlette_says(
    host: bytes | None, scheme: str, root_path: str
) -> None:
    request = Request(scope(host, scheme=scheme, root_path=root_path))
    expected = (str(request.base_url).rstrip("/"), request.url.hostname)
    assert reached_at(Request(scope(host, scheme=scheme, root_path=root_path))) == expected
    assert reached_at(request) == expected  # and again, remembered


def test_many_hosts_do_not_grow_what_is_remembered() -> None:
    for index in range(1000):
        reached_at(Request(scope(f"h{index}.example".encode())))
    assert _reached_at.cache_info().currsize <= 64
