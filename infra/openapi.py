"""One OpenAPI document for every route, generated from the code.

Each HTTP function's Powertools resolver emits its own part (``app.get_openapi_schema()``);
this merges them into one document, adds the bearer-token security of the routes that
``template.yaml`` puts behind the JWT authorizer, and checks that the template's routes and
the code's routes are the same set. The result is committed as ``docs/openapi.json``::

    python -m infra.openapi            # regenerate docs/openapi.json (make openapi)
    python -m infra.openapi --check    # exit 1 if the committed file is stale
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from infra.template import LOCAL_REGION, REPO_ROOT, Stack

DOCUMENT_PATH = REPO_ROOT / "docs" / "openapi.json"
REGENERATE_COMMAND = "make openapi  (or: .venv/bin/python -m infra.openapi)"
TITLE = "tokenledger"
VERSION = "1"
SECURITY_SCHEME = "bearerAuth"
HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")
DESCRIPTION = (
    "The token ledger of the prediction app: balances, commitments, history, admin entries "
    "and Stripe credits. Amounts are integer tokens. Errors are RFC 9457 problem details "
    "(`application/problem+json`) with a stable `code`. Every POST that moves tokens needs an "
    "`Idempotency-Key` header.\n\n"
    "Locally (`make run`), get a bearer token with `tokenledger token <user>` "
    "(`--admin` for admin routes) and paste it into **Authorize**."
)


class RouteMismatch(RuntimeError):
    """template.yaml and the handlers disagree about the routes."""


@contextlib.contextmanager
def _isolated_aws() -> Iterator[None]:
    """Import handlers without reaching any AWS endpoint (module imports build clients)."""
    os.environ.setdefault("AWS_DEFAULT_REGION", LOCAL_REGION)
    from moto import mock_aws

    with mock_aws():
        yield


def _resolver_parts(stack: Stack) -> dict[str, dict[str, Any]]:
    """Each HTTP function's own OpenAPI document, by logical id."""
    from infra.lambdas import load_module
    from tokenledger.http.openapi import describe
    from tokenledger.http.schemas import document_routes

    parts = {}
    with _isolated_aws():
        for logical_id, spec in sorted(stack.functions().items()):
            if not any(event.get("Type") == "HttpApi" for event in spec.events.values()):
                continue
            module = load_module(spec)
            app = getattr(module, "app", None)
            if app is None or not hasattr(app, "get_openapi_json_schema"):
                raise RouteMismatch(f"{logical_id} serves HttpApi routes but {spec.handler_file} has no resolver `app`")
            document_routes(app)  # the handlers declare light shapes: their pydantic models here
            part = json.loads(app.get_openapi_json_schema(title=TITLE, version=VERSION))
            describe(app, part)  # headers the handlers read, examples, descriptions
            parts[logical_id] = part
    return parts


def _tag(logical_id: str) -> str:
    """`StripeWebhookFunction` -> `stripe webhook`: the function a route belongs to."""
    name = logical_id.removesuffix("Function") or logical_id
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name).lower()


def _summarize(method: str, path: str, operation: dict[str, Any]) -> None:
    """Powertools' default summary repeats the route; the handler's docstring says more."""
    if operation.get("summary") != f"{method.upper()} {path}":
        return
    description = str(operation.get("description") or "").strip()
    # Powertools' operationId is `<handler name><path, non-word characters as _>_<method>`.
    suffix = re.sub(r"\W", "_", path) + "_" + method
    operation_id = str(operation.get("operationId") or "")
    if description:
        operation["summary"] = description.splitlines()[0].rstrip(".")
    elif operation_id.endswith(suffix) and len(operation_id) > len(suffix):
        operation["summary"] = operation_id.removesuffix(suffix).replace("_", " ").capitalize()
    else:
        del operation["summary"]


def build_document(stack: Stack | None = None) -> dict[str, Any]:
    """The merged document; raises ``RouteMismatch`` if template and code disagree."""
    stack = stack or Stack()
    routes = {(r.method.lower(), r.path): r for r in stack.routes()}
    paths: dict[str, dict[str, Any]] = {}
    schemas: dict[str, Any] = {}
    seen: set[tuple[str, str]] = set()
    problems: list[str] = []
    for logical_id, part in _resolver_parts(stack).items():
        for name, schema in part.get("components", {}).get("schemas", {}).items():
            if name in schemas and schemas[name] != schema:
                problems.append(f"schema {name!r} differs between functions (last seen in {logical_id})")
            schemas[name] = schema
        for path, operations in part.get("paths", {}).items():
            for method, operation in operations.items():
                if method not in HTTP_METHODS:
                    continue
                key = (method, path)
                route = routes.get(key)
                if route is None:
                    problems.append(f"{method.upper()} {path} is in {logical_id}'s code but not in template.yaml")
                    continue
                if route.function != logical_id:
                    problems.append(f"{method.upper()} {path} is routed to {route.function} but served by {logical_id}")
                if key in seen:
                    problems.append(f"{method.upper()} {path} is served twice")
                seen.add(key)
                operation.setdefault("tags", [_tag(logical_id)])
                _summarize(method, path, operation)
                operation["security"] = [{SECURITY_SCHEME: []}] if route.authorized else []
                paths.setdefault(path, {})[method] = operation
    for key, route in sorted(routes.items()):
        if key not in seen:
            problems.append(f"{route.route_key} is in template.yaml ({route.function}) but no handler serves it")
    if problems:
        raise RouteMismatch("template.yaml and the handlers disagree:\n  " + "\n  ".join(problems))
    return {
        "openapi": "3.1.0",
        "info": {"title": TITLE, "version": VERSION, "description": DESCRIPTION},
        "servers": [{"url": "/", "description": "this server"}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                SECURITY_SCHEME: {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "A Cognito access token; locally, one from `tokenledger token <user>`.",
                }
            },
        },
    }


def render(document: dict[str, Any]) -> str:
    """Stable text: sorted keys, two-space indent, one trailing newline."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def stale_message(path: Path = DOCUMENT_PATH) -> str:
    return f"{path.relative_to(REPO_ROOT)} does not match the code; regenerate it with: {REGENERATE_COMMAND}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.openapi", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed document is stale")
    parser.add_argument("--output", type=Path, default=DOCUMENT_PATH, help="where to write (default docs/openapi.json)")
    args = parser.parse_args(argv)
    try:
        text = render(build_document())
    except RouteMismatch as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    output: Path = args.output.resolve()
    if args.check:
        current = output.read_text(encoding="utf-8") if output.is_file() else ""
        if current != text:
            print(stale_message(output), file=sys.stderr)
            return 1
        print(f"{output.relative_to(REPO_ROOT)} is up to date")
        return 0
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    print(f"wrote {output} ({len(json.loads(text)['paths'])} paths)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
