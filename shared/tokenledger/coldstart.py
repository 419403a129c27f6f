"""What every function's module imports first, to keep its cold start near the floor.

1. Import only the Powertools modules a function uses.

`from aws_lambda_powertools.event_handler import APIGatewayHttpResolver` runs the package's
`__init__`, which imports every resolver Powertools has (AppSync and its asyncio, Bedrock
agents, VPC Lattice, Lambda function URLs...), and the API Gateway resolver imports
`utilities.data_classes`, whose `__init__` imports some forty event classes to use seven.
Those package initialisers only re-export names, so `lazy_reexports` replaces each with a
module that imports a name's home module when the name is first read. The modules a
function uses load exactly as before; the others never load (docs/benchmarks.md has what it
buys). A package whose `__init__` does anything but re-export is left to load normally.

2. Build each pydantic model when it first validates or makes a schema, not when its class
is defined (`defer_build`). No function imports pydantic on its way to serving a valid
request (`tokenledger.http.shapes`); it is loaded when a request needs Powertools' own
validation (a refused body or query), and then only the models that request uses are built.

3. The layer before the function's own package on `sys.path`. Lambda puts the function's
package (`LAMBDA_TASK_ROOT`) first; the Stripe functions ship `stripe` there, and with it
its dependencies `urllib3` and `typing_extensions`, which the layer also has. The layer's
copies are the versions botocore and Powertools are tested with, so they win; the function's
package keeps what only it has (`stripe`, `requests`). When SAM's python builder shipped that
package without bytecode, this also kept botocore's `urllib3` and Logger's `typing_extensions`
from being compiled on every cold start (0.3-0.4x of the floor, measured); the package is now
built with bytecode too (`shared/Makefile`).

4. No pydantic plugins: pydantic looks for them in every installed distribution's entry
points when it builds its first model; the layer has none (`PYDANTIC_DISABLE_PLUGINS`).

5. No garbage collection during init. CPython's cyclic collector makes a full pass whenever
enough objects have survived the younger ones; while a function initialises, nearly every
object it makes lives as long as the environment (modules, classes, botocore's service
models), so each full pass walks hundreds of thousands of objects and frees almost nothing.
On Lambda (`LAMBDA_TASK_ROOT` set) the collector is off from this module's first line, and
the handler module's last line, `end_of_init()`, moves everything made so far into the
permanent generation (`gc.freeze()`, as CPython's documentation advises before a fork) and
turns the collector back on: later passes, during requests, walk only what requests made.
The price is the few cycles that became garbage during init, frozen for the environment's
life (docs/benchmarks.md has both figures). Outside Lambda nothing changes.
"""

from __future__ import annotations

import ast
import gc
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

# Re-export-only package initialisers on every HTTP function's import path.
LAZY_PACKAGES = (
    "aws_lambda_powertools.event_handler",
    "aws_lambda_powertools.utilities.data_classes",
    # The Stripe functions read one secret with SecretsProvider; the package's `__init__` also
    # imports the AppConfig, SSM and DynamoDB providers (0.26x of the floor with them, measured).
    "aws_lambda_powertools.utilities.parameters",
)


def _reexports(source: str, package: str) -> tuple[dict[str, tuple[str, str]], list[str] | None] | None:
    """name -> (home module, attribute) for an `__init__` made only of imports and `__all__`."""
    names: dict[str, tuple[str, str]] = {}
    exported: list[str] | None = None
    for node in ast.parse(source).body:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            continue  # the docstring
        if isinstance(node, ast.ImportFrom) and node.module and all(a.name != "*" for a in node.names):
            home = importlib.util.resolve_name("." * node.level + node.module, package) if node.level else node.module
            for alias in node.names:
                names[alias.asname or alias.name] = (home, alias.name)
            continue
        if (
            isinstance(node, ast.Assign)
            and [getattr(t, "id", None) for t in node.targets] == ["__all__"]
            and isinstance(node.value, ast.List | ast.Tuple)
        ):
            exported = [e.value for e in node.value.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
            continue
        return None  # anything else may be a side effect: leave the package alone
    return names, exported


def lazy_reexports(package: str) -> bool:
    """Install `package` as a module whose re-exported names load on first use; False if not."""
    if package in sys.modules:
        return False
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None or spec.submodule_search_locations is None or spec.loader is None:
        return False
    get_source = getattr(spec.loader, "get_source", None)
    source = get_source(package) if get_source is not None else None
    parsed = _reexports(source, package) if source else None
    if parsed is None:
        return False
    names, exported = parsed
    module = importlib.util.module_from_spec(spec)

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        home, attribute = names[name]
        value = getattr(importlib.import_module(home), attribute)
        setattr(module, name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(module.__dict__) | set(names))

    module.__getattr__ = __getattr__  # type: ignore[method-assign]
    module.__dir__ = __dir__  # type: ignore[method-assign]
    if exported is not None:
        module.__all__ = exported  # type: ignore[attr-defined]
    sys.modules[package] = module
    parent, _, child = package.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, module)
    # A name that is also a submodule's name must be the name (as after the real `__init__`),
    # not the submodule that importing it would bind on the package: resolve those now.
    for name, (home, _attribute) in names.items():
        if home == f"{package}.{name}":
            __getattr__(name)
    return True


def trim_powertools() -> list[str]:
    """Make the packages in LAZY_PACKAGES lazy; the ones it could (none if already imported)."""
    return [package for package in LAZY_PACKAGES if lazy_reexports(package)]


PYDANTIC_CONFIG = "pydantic._internal._config"


def _defer_by_default(config: ModuleType) -> bool:
    defaults = getattr(config, "config_defaults", None)
    if not isinstance(defaults, dict) or "defer_build" not in defaults:  # pragma: no cover - another pydantic
        return False
    defaults["defer_build"] = True
    return True


class _AfterImport(importlib.abc.MetaPathFinder):
    """Runs `then(module)` right after `name` is first imported (functions that never import
    pydantic, e.g. the Cognito trigger, must not pay for importing it here)."""

    def __init__(self, name: str, then: Callable[[ModuleType], Any]) -> None:
        self.name = name
        self.then = then

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:  # pragma: no cover
            return spec
        loader = spec.loader
        original = loader.exec_module

        def exec_module(module: ModuleType) -> None:
            original(module)
            self.then(module)

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def defer_pydantic_builds() -> bool:
    """Make `defer_build` pydantic's default (a model's own `model_config` still wins), now if
    pydantic is loaded, else as soon as it is."""
    config = sys.modules.get(PYDANTIC_CONFIG)
    if config is not None:
        return _defer_by_default(config)
    if not any(isinstance(f, _AfterImport) and f.name == PYDANTIC_CONFIG for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterImport(PYDANTIC_CONFIG, _defer_by_default))
    return True


def layer_first() -> bool:
    """Move the function's package after the layer holding this module on `sys.path` (3.)."""
    task_root = os.environ.get("LAMBDA_TASK_ROOT")
    layer_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = sys.path
    if not task_root or layer_root not in path:
        return False
    task = os.path.abspath(task_root)
    ahead = [p for p in path[: path.index(layer_root)] if os.path.abspath(p or os.curdir) == task]
    for entry in ahead:  # the task root, and "" when it is the working directory
        path.remove(entry)
    for entry in reversed(ahead):
        path.insert(path.index(layer_root) + 1, entry)
    return bool(ahead)


def pause_collection() -> bool:
    """Turn the cyclic garbage collector off for init, on Lambda only (5.); True if it did."""
    if not os.environ.get("LAMBDA_TASK_ROOT") or not gc.isenabled():
        return False
    gc.disable()
    return True


def end_of_init() -> None:
    """The handler module's last line: freeze what init made and collect again from here (5.)."""
    if COLLECTION_PAUSED and not gc.isenabled():
        gc.freeze()
        gc.enable()


COLLECTION_PAUSED: bool = pause_collection()
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
LAYER_FIRST: bool = layer_first()
TRIMMED: list[str] = trim_powertools()
DEFERRED: bool = defer_pydantic_builds()
