"""tokenledger.coldstart: what every function imports first, and what it changes (never a time)."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from infra.template import REPO_ROOT, Stack
from tokenledger.coldstart import lazy_reexports

FUNCTIONS = Stack().functions()


def _first_import(path: Path) -> str | None:
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.ImportFrom) and node.module == "__future__":
            continue
        if isinstance(node, ast.Import):
            return node.names[0].name
        if isinstance(node, ast.ImportFrom):
            return node.module
    return None


@pytest.mark.parametrize("function", sorted(FUNCTIONS))
def test_every_function_imports_coldstart_before_anything_else(function: str) -> None:
    # Any function the template declares, including ones added later, trims its imports.
    assert _first_import(FUNCTIONS[function].handler_file) == "tokenledger.coldstart", (
        f"{function}: make `import tokenledger.coldstart` its first import (docs/benchmarks.md)"
    )


def _last_statement(path: Path) -> str:
    return ast.unparse(ast.parse(path.read_text(encoding="utf-8")).body[-1])


@pytest.mark.parametrize("function", sorted(FUNCTIONS))
def test_every_function_ends_its_init_with_the_collector_back_on(function: str) -> None:
    # On Lambda the collector is off from coldstart's first line; a module that did not end
    # its init would run every request with it off, and its cyclic garbage would never be freed.
    assert _last_statement(FUNCTIONS[function].handler_file) == "tokenledger.coldstart.end_of_init()", (
        f"{function}: end the module with `tokenledger.coldstart.end_of_init()` (tokenledger/coldstart.py, 5.)"
    )


def _package(root: Path, name: str, init: str, modules: dict[str, str]) -> None:
    package = root / name
    package.mkdir()
    (package / "__init__.py").write_text(textwrap.dedent(init))
    for module, body in modules.items():
        (package / f"{module}.py").write_text(textwrap.dedent(body))


def test_a_reexporting_package_loads_each_name_only_when_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _package(
        tmp_path,
        "tl_lazy_demo",
        '''
        """Re-exports only."""
        from .cheap import Cheap
        from .costly import Costly as Renamed
        from tl_lazy_demo.hook import hook
        __all__ = ["Cheap", "Renamed", "hook"]
        ''',
        {"cheap": "class Cheap: ...\n", "costly": "class Costly: ...\n", "hook": "def hook(): return 'hooked'\n"},
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert lazy_reexports("tl_lazy_demo")
        # A name that is also a submodule's name is the name, as after the real __init__.
        assert "tl_lazy_demo.hook" in sys.modules
        import tl_lazy_demo  # type: ignore[import-not-found]

        assert tl_lazy_demo.hook() == "hooked"
        assert "tl_lazy_demo.costly" not in sys.modules
        from tl_lazy_demo import Cheap  # type: ignore[import-not-found]

        assert Cheap.__module__ == "tl_lazy_demo.cheap"
        assert "tl_lazy_demo.costly" not in sys.modules
        namespace: dict[str, object] = {}
        exec("from tl_lazy_demo import *", namespace)
        assert {"Cheap", "Renamed", "hook"} <= set(namespace)
        assert "tl_lazy_demo.costly" in sys.modules
        with pytest.raises(ImportError):
            exec("from tl_lazy_demo import Missing", {})
        assert not lazy_reexports("tl_lazy_demo")  # already imported: left as it is
    finally:
        for name in [m for m in sys.modules if m.startswith("tl_lazy_demo")]:
            del sys.modules[name]


def test_a_package_whose_init_does_more_than_reexport_is_left_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _package(tmp_path, "tl_eager_demo", "from .a import A\nSIDE_EFFECT = A()\n", {"a": "class A: ...\n"})
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert not lazy_reexports("tl_eager_demo")
        assert "tl_eager_demo" not in sys.modules
    finally:
        for name in [m for m in sys.modules if m.startswith("tl_eager_demo")]:
            del sys.modules[name]


def test_in_a_fresh_function_process_unused_powertools_and_unbuilt_models_stay_out() -> None:
    # What Lambda runs: the writes function's module in a new interpreter. Its resolver, its
    # routes and its validation still work; what it does not use is not loaded or built.
    script = textwrap.dedent(
        """
        import gc, json, sys
        import app
        from tokenledger.http import requests
        from tokenledger.http.schemas import WriteOut, model_of
        CommitmentIn = model_of(requests.CommitmentIn)
        from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, AppSyncResolver
        unbuilt = not WriteOut.__pydantic_complete__
        CommitmentIn.model_validate({"prediction_id": "p-1", "amount": 1})
        print(json.dumps({
            "asyncio_before_appsync": "asyncio" in loaded,
            "pydantic_at_import": sorted(m for m in loaded if m.split(".")[0] in ("pydantic", "pydantic_core")),
            "unbuilt_response_model": unbuilt,
            "built_on_use": CommitmentIn.__pydantic_complete__,
            "resolver": type(app.app).__name__,
            "plugins": __import__("os").environ.get("PYDANTIC_DISABLE_PLUGINS"),
            "collection_paused_during_init": app.tokenledger.coldstart.COLLECTION_PAUSED,
            "collector_on_after_init": gc.isenabled(),
            "init_frozen": gc.get_freeze_count() > 10_000,
        }))
        """
    ).replace("import app\n", "import app\nloaded = set(sys.modules)\n")
    writes = FUNCTIONS["WritesFunction"]
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": f"{writes.code_dir}{':'}{REPO_ROOT / 'shared'}",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "POWERTOOLS_SERVICE_NAME": "tokenledger",
        **writes.environment,
        "XRAY_SDK_TRACING": "disabled",
        "LAMBDA_TASK_ROOT": str(writes.code_dir),
    }
    done = subprocess.run(
        [sys.executable, "-c", script],
        check=False,
        env=env,
        cwd=writes.code_dir,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    import json

    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen == {
        "asyncio_before_appsync": False,
        "pydantic_at_import": [],  # a valid request is validated by tokenledger.http.shapes
        "unbuilt_response_model": True,
        "built_on_use": True,
        "resolver": "LedgerResolver",  # APIGatewayHttpResolver, deciding 401/403 before the body (api.py)
        "plugins": "__all__",
        "collection_paused_during_init": True,
        "collector_on_after_init": True,
        "init_frozen": True,  # what init made is in the permanent generation
    }


def test_off_lambda_the_collector_is_left_alone() -> None:
    import gc

    from tokenledger import coldstart

    assert not coldstart.COLLECTION_PAUSED  # the test process has no LAMBDA_TASK_ROOT
    frozen = gc.get_freeze_count()
    coldstart.end_of_init()
    assert gc.isenabled() and gc.get_freeze_count() == frozen


def test_a_lazy_client_is_made_once_on_first_use_and_answers_as_the_client() -> None:
    from tokenledger.adapters.lazy import LazyClient

    made: list[int] = []

    class Client:
        def head_bucket(self, Bucket: str) -> dict[str, str]:
            return {"bucket": Bucket}

    def factory() -> Client:
        made.append(1)
        return Client()

    lazy = LazyClient(factory)
    assert not lazy.made and made == []
    assert lazy.head_bucket(Bucket="b") == {"bucket": "b"}
    assert lazy.head_bucket(Bucket="c") == {"bucket": "c"}
    assert made == [1] and lazy.made
    with pytest.raises(AttributeError):
        lazy.no_such_operation  # noqa: B018 - the client's own AttributeError


def test_on_lambda_the_layer_comes_before_the_functions_own_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The Stripe functions' package ships urllib3 and typing_extensions without bytecode; the
    # layer's compiled copies must win (docs/benchmarks.md), while stripe stays importable.
    from tokenledger import coldstart

    layer = str(Path(coldstart.__file__).resolve().parent.parent)
    task = str(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", ["", task, "/elsewhere", layer, "/stdlib"])
    monkeypatch.setenv("LAMBDA_TASK_ROOT", task)
    assert coldstart.layer_first()
    assert sys.path == ["/elsewhere", layer, "", task, "/stdlib"]
    assert not coldstart.layer_first()  # already in order
    monkeypatch.delenv("LAMBDA_TASK_ROOT")
    assert not coldstart.layer_first()  # not on Lambda: nothing moves
