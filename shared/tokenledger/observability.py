"""Tracing that costs nothing at cold start unless it is switched on.

Lambda's own X-Ray tracing (`Tracing: Active` in the template) records every invocation
without any SDK. Powertools' Tracer adds subsegments for each AWS call, but it imports the
X-Ray SDK, whose recorder builds its own botocore X-Ray client at import: measured here at
100-250 ms, the largest single item of a handler's cold start (docs/benchmarks.md). So the
SDK is loaded only where the template's `XRaySdkTracing` parameter turns it on
(env `XRAY_SDK_TRACING=enabled`), and then patches botocore only.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Protocol

Handler = Callable[[Any, Any], Any]


class LambdaTracer(Protocol):
    def capture_lambda_handler(self, lambda_handler: Handler) -> Handler: ...


class _InvocationOnlyTracer:
    """Leaves tracing to Lambda's active tracing: the handler runs as it is."""

    def capture_lambda_handler(self, lambda_handler: Handler) -> Handler:
        return lambda_handler


def sdk_tracing_enabled() -> bool:
    return os.environ.get("XRAY_SDK_TRACING", "disabled").strip().lower() == "enabled"


def make_tracer() -> LambdaTracer:
    """Powertools' Tracer when X-Ray SDK tracing is enabled, else a pass-through."""
    if not sdk_tracing_enabled():
        return _InvocationOnlyTracer()
    from aws_lambda_powertools import Tracer

    tracer: LambdaTracer = Tracer(patch_modules=("botocore",))
    return tracer
