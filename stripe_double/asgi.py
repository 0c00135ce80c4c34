"""A minimal ASGI request/response layer and a path router (no framework needed)."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

MAX_BODY = 1024 * 1024


@dataclass
class Request:
    method: str
    path: str
    query: bytes
    headers: dict[str, str]
    body: bytes
    scheme: str
    host: str

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{self.host}"

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


def json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(payload, indent=2).encode()
    return Response(status, body, headers=dict(headers or {}))


def html_response(status: int, page: str, headers: dict[str, str] | None = None) -> Response:
    return Response(status, page.encode(), "text/html; charset=utf-8", dict(headers or {}))


def redirect(location: str) -> Response:
    return Response(303, b"", "text/plain", {"Location": location})


async def read_request(scope: dict[str, Any], receive: Callable[[], Awaitable[Any]]) -> Request:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            raise ValueError("request body too large")
        chunks.append(chunk)
        if not message.get("more_body"):
            break
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
    server = scope.get("server") or ("127.0.0.1", 80)
    host = headers.get("host") or f"{server[0]}:{server[1]}"
    return Request(
        method=scope["method"],
        path=scope["path"],
        query=scope.get("query_string", b""),
        headers=headers,
        body=b"".join(chunks),
        scheme=scope.get("scheme", "http"),
        host=host,
    )


async def send_response(send: Callable[[dict[str, Any]], Awaitable[None]], resp: Response) -> None:
    headers = [
        (b"content-type", resp.content_type.encode()),
        (b"content-length", str(len(resp.body)).encode()),
    ]
    headers += [(k.lower().encode(), v.encode("latin-1")) for k, v in resp.headers.items()]
    await send({"type": "http.response.start", "status": resp.status, "headers": headers})
    await send({"type": "http.response.body", "body": resp.body})


@dataclass
class Route:
    method: str
    pattern: str
    handler: Callable[..., Any]

    def __post_init__(self) -> None:
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", self.pattern)
        self.regex = re.compile(f"^{regex}$")


class Router:
    def __init__(self, routes: list[Route]) -> None:
        self.routes = routes

    def match(self, method: str, path: str) -> tuple[Route | None, dict[str, str], bool]:
        """(route, path params, whether the path exists for some other method)."""
        other_method = False
        for route in self.routes:
            found = route.regex.match(path)
            if found:
                if route.method == method:
                    return route, found.groupdict(), False
                other_method = True
        return None, {}, other_method
