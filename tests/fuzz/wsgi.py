"""A WSGI face for `infra.api.LocalApi`, so schemathesis can call the real handlers in process.

API Gateway's JWT authorizer is stood in for by the bearer token itself: `Bearer user:<sub>`
or `Bearer admin:<sub>` become the claims the authorizer would pass; anything else passes
no claims (the handlers answer 401, as the contract asks).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl

from infra.api import LocalApi

StartResponse = Callable[[str, list[tuple[str, str]]], Any]
_REASONS = {200: "OK", 201: "Created", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found"}


def claims_from_authorization(value: str | None) -> dict[str, Any] | None:
    if not value or not value.startswith("Bearer "):
        return None
    role, _, sub = value[len("Bearer ") :].partition(":")
    if not sub:
        return None
    if role == "admin":
        return {"sub": sub, "cognito:groups": "[admin]"}
    return {"sub": sub} if role == "user" else None


class LocalApiWsgi:
    def __init__(self, api: LocalApi) -> None:
        self.api = api
        self.statuses: Counter[tuple[str, int]] = Counter()  # (route, status) seen

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        headers = {
            key[5:].replace("_", "-").lower(): str(value) for key, value in environ.items() if key.startswith("HTTP_")
        }
        if environ.get("CONTENT_TYPE"):
            headers["content-type"] = environ["CONTENT_TYPE"]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        query = dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True))
        try:
            text: str | bytes | None = body.decode() if body else None
        except UnicodeDecodeError:
            text = body  # binary: the event carries it base64-encoded, as API Gateway does
        response = self.api.request(
            environ["REQUEST_METHOD"],
            environ.get("PATH_INFO") or "/",
            claims=claims_from_authorization(headers.get("authorization")),
            headers=headers,
            body=text,
            query=query or None,
        )
        found = self.api.match(environ["REQUEST_METHOD"], environ.get("PATH_INFO") or "/")
        self.statuses[(found[0].route_key if found else "no route", response.status)] += 1
        reason = _REASONS.get(response.status, "Status")
        start_response(f"{response.status} {reason}", list(response.headers.items()))
        return [response.body.encode()]
