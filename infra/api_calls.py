"""One patch of botocore's `BaseClient._make_api_call` for the local fault injectors (chaos, the bus).

Each injector registers an intercept for one AWS service; the patch, installed once for the
process, routes that service's calls through it. An intercept gets the original method and
calls it for what it lets through. Above botocore's own retry layer: an injected fault reaches
the caller as if botocore's retries were spent.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

# intercept(original, client, operation_name, api_params) -> the call's answer
Intercept = Callable[[Callable[..., Any], Any, str, dict[str, Any]], Any]

_lock = threading.Lock()
_intercepts: dict[str, Intercept] = {}


def intercept_service(service_name: str, intercept: Intercept) -> None:
    """Route every call to `service_name` through `intercept` (idempotent: the first one registered stays)."""
    with _lock:
        if not _intercepts:
            _patch()
        _intercepts.setdefault(service_name, intercept)


def _patch() -> None:
    from botocore.client import BaseClient

    original = BaseClient._make_api_call

    def make_api_call(self: Any, operation_name: str, api_params: dict[str, Any]) -> Any:
        intercept = _intercepts.get(self.meta.service_model.service_name)
        if intercept is None:
            return original(self, operation_name, api_params)
        return intercept(original, self, operation_name, api_params)

    BaseClient._make_api_call = make_api_call  # type: ignore[method-assign]
