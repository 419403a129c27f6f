"""Route requests to the template's handlers in process, as API Gateway would."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

from infra.events import http_event
from infra.lambdas import Environment, EnvironmentPool
from infra.template import Route, Stack


def caller_claims(sub: str | None, groups: list[str] | None = None) -> dict[str, Any] | None:
    """The JWT claims API Gateway passes for a caller (None: anonymous); groups as `"[a b]"`, as it does."""
    if sub is None:
        return None
    claims: dict[str, Any] = {"sub": sub}
    if groups is not None:
        claims["cognito:groups"] = "[" + " ".join(groups) + "]"
    return claims


@dataclass
class ApiResponse:
    status: int
    headers: dict[str, str]
    body: str
    json: Any = field(default=None)


class LocalApi:
    """The HTTP API of `template.yaml`, served by the real handlers in this process."""

    def __init__(self, stack: Stack, pool: EnvironmentPool | None = None) -> None:
        self.stack = stack
        self.routes = stack.routes()
        self.pool = pool or EnvironmentPool(stack.functions())

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        for route in self.routes:
            params = route.match(method, path)
            if params is not None:
                return route, params
        return None

    def request(
        self,
        method: str,
        path: str,
        *,
        claims: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        body: str | bytes | None = None,
        query: dict[str, str] | None = None,
        environment: Environment | None = None,
    ) -> ApiResponse:
        """Route the request and invoke the route's handler: in `environment` if given, else from the pool."""
        found = self.match(method, path)
        if found is None:
            problem = {
                "type": "about:blank",
                "title": "Not Found",
                "status": 404,
                "detail": "no such route",
                "code": "not_found",
            }
            return ApiResponse(404, {"content-type": "application/problem+json"}, json.dumps(problem), problem)
        route, params = found
        event = http_event(
            route,
            path=path,
            path_parameters=params,
            query=query,
            headers=headers,
            body=body,
            claims=claims if route.authorized else None,
        )
        raw = self.pool.invoke(route.function, event) if environment is None else environment.invoke(event)
        return self._response(raw)

    @staticmethod
    def _response(raw: dict[str, Any]) -> ApiResponse:
        headers = {k.lower(): str(v) for k, v in (raw.get("headers") or {}).items()}
        body = raw.get("body") or ""
        if raw.get("isBase64Encoded"):
            body = base64.b64decode(body).decode()
        parsed = None
        if body and headers.get("content-type", "").endswith("json"):
            parsed = json.loads(body)
        return ApiResponse(int(raw.get("statusCode", 200)), headers, body, parsed)
