"""The X-Ray SDK is loaded only when the template switches it on."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tokenledger.observability import make_tracer, sdk_tracing_enabled

PROBE = (
    "import sys; from tokenledger.observability import make_tracer; t = make_tracer(); "
    "print(type(t).__name__, 'aws_xray_sdk.core' in sys.modules)"
)


def test_disabled_tracing_leaves_the_handler_untouched(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XRAY_SDK_TRACING", "disabled")
    assert not sdk_tracing_enabled()

    def handler(event: object, context: object) -> object:
        return event

    assert make_tracer().capture_lambda_handler(handler) is handler


@pytest.mark.parametrize(
    ("setting", "expected"), [("disabled", "_InvocationOnlyTracer False"), ("enabled", "Tracer True")]
)
def test_the_sdk_is_imported_only_when_enabled(setting: str, expected: str) -> None:
    env = {"XRAY_SDK_TRACING": setting, "PYTHONPATH": "shared", "AWS_DEFAULT_REGION": "us-east-1", "PATH": ""}
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == expected
