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


_request_state = threading.local()
_powertools_isolated = False


class _PerThread:
    """A data descriptor whose value belongs to the calling thread."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, instance: object, owner: type | None = None) -> Any:
        try:
            return getattr(_request_state, self.name)
        except AttributeError:
            raise AttributeError(self.name) from None

    def __set__(self, instance: object, value: Any) -> None:
        setattr(_request_state, self.name, value)


def isolate_powertools_request_state() -> None:
    """Keep each thread's current event apart, as separate Lambda processes would. Idempotent.

    Powertools' `resolve()` stores the event and context on the class `BaseRouter`, shared
    by every resolver in the process, so separate module copies are not enough: two threads
    resolving at once would read each other's event (caller, body, headers). This makes
    `BaseRouter.current_event` and `.lambda_context` per thread, for class and instance access.
    """
    global _powertools_isolated
    if _powertools_isolated:
        return
    from aws_lambda_powertools.event_handler.api_gateway import BaseRouter

    names = ("current_event", "lambda_context")
    for name in names:
        setattr(BaseRouter, name, _PerThread(name))  # instance access: `self.current_event`
    meta = type(BaseRouter)
    # Class access and assignment (`BaseRouter.current_event = ...`) go through the metaclass.
    per_thread_meta = type(f"PerThread{meta.__name__}", (meta,), {name: _PerThread(name) for name in names})
    BaseRouter.__class__ = per_thread_meta  # type: ignore[method-assign]
    _powertools_isolated = True


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
        isolate_powertools_request_state()
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
