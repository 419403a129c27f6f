"""Load the template's handlers the way Lambda does: one module copy per execution environment.

Powertools resolvers keep the current event on the module's `app`, so two concurrent
requests must never share a module copy. `Environment` is one warm Lambda container.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import sys
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any

from infra.template import FunctionSpec

_counter = itertools.count()
_import_lock = threading.Lock()


class FakeContext:
    """The parts of the Lambda context object Powertools reads."""

    def __init__(self, function_name: str, timeout_s: int) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{function_name}"
        self.memory_limit_in_mb = 512
        self.aws_request_id = f"local-{next(_counter)}"
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "local"
        self._timeout_s = timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return self._timeout_s * 1000


def load_module(spec: FunctionSpec) -> ModuleType:
    """A fresh import of the function's handler module (a new cold start)."""
    with _import_lock:
        for key, value in spec.environment.items():
            os.environ.setdefault(key, value)
        name = f"tokenledger_fn_{spec.logical_id}_{next(_counter)}"
        module_spec = importlib.util.spec_from_file_location(name, spec.handler_file)
        if module_spec is None or module_spec.loader is None:
            raise ImportError(f"cannot load {spec.handler_file}")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        module_spec.loader.exec_module(module)
        return module


class Environment:
    """One warm execution environment of a function: serves one request at a time."""

    def __init__(self, spec: FunctionSpec) -> None:
        self.spec = spec
        self.module = load_module(spec)
        self.handler: Callable[[dict[str, Any], Any], Any] = getattr(self.module, spec.handler_function)
        self._busy = threading.Lock()

    def invoke(self, event: dict[str, Any]) -> Any:
        with self._busy:
            return self.handler(event, FakeContext(self.spec.logical_id, self.spec.timeout_s))


class EnvironmentPool:
    """Warm environments per function, created on demand, each used by one caller at a time."""

    def __init__(self, specs: dict[str, FunctionSpec]) -> None:
        self.specs = specs
        self._idle: dict[str, list[Environment]] = {name: [] for name in specs}
        self._lock = threading.Lock()

    def invoke(self, function: str, event: dict[str, Any]) -> Any:
        with self._lock:
            idle = self._idle[function]
            environment = idle.pop() if idle else None
        if environment is None:
            environment = Environment(self.specs[function])
        try:
            return environment.invoke(event)
        finally:
            with self._lock:
                self._idle[function].append(environment)
