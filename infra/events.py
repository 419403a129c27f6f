"""API Gateway HTTP API (payload format 2.0) events, as the real service sends them."""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any
from urllib.parse import urlencode

from infra.template import Route


def http_event(
    route: Route,
    *,
    path: str,
    path_parameters: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    body: str | bytes | None = None,
    claims: dict[str, Any] | None = None,
    stage: str = "$default",
) -> dict[str, Any]:
    """An HTTP API v2 event for `route`; `claims` as the JWT authorizer passes them."""
    is_binary = isinstance(body, bytes)
    encoded = base64.b64encode(body).decode() if isinstance(body, bytes) else body
    now = time.time()
    request_context: dict[str, Any] = {
        "accountId": "123456789012",
        "apiId": "local",
        "domainName": "localhost",
        "domainPrefix": "localhost",
        "http": {
            "method": route.method,
            "path": path,
            "protocol": "HTTP/1.1",
            "sourceIp": "127.0.0.1",
            "userAgent": (headers or {}).get("user-agent", "tokenledger-local"),
        },
        "requestId": str(uuid.uuid4()),
        "routeKey": route.route_key,
        "stage": stage,
        "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
        "timeEpoch": int(now * 1000),
    }
    if claims is not None:
        request_context["authorizer"] = {"jwt": {"claims": claims, "scopes": None}}
    return {
        "version": "2.0",
        "routeKey": route.route_key,
        "rawPath": path,
        "rawQueryString": urlencode(query or {}),
        "headers": {k.lower(): v for k, v in (headers or {}).items()},
        "queryStringParameters": query or None,
        "pathParameters": path_parameters or None,
        "requestContext": request_context,
        "body": encoded,
        "isBase64Encoded": is_binary,
    }


def json_body(response: dict[str, Any]) -> Any:
    body = response.get("body") or ""
    if response.get("isBase64Encoded"):
        body = base64.b64decode(body).decode()
    return json.loads(body) if body else None
