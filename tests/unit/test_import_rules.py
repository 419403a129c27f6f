"""The layers' import rules, checked from the source so they stay true (docs: README, Layout)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUNTIME_TREES = ("shared", "infra", "bench", "functions")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _modules(*trees: str) -> list[Path]:
    return sorted(p for tree in trees for p in (ROOT / tree).rglob("*.py") if ".venv" not in p.parts)


def _offenders(paths: list[Path], forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in paths
        for name in sorted(_imports(path))
        if any(name == f or name.startswith(f + ".") for f in forbidden)
    ]


def test_nothing_outside_tests_imports_tests() -> None:
    assert _modules(*RUNTIME_TREES), "the scan found no modules: the paths are wrong"
    assert _offenders(_modules(*RUNTIME_TREES), ("tests",)) == []


def test_domain_imports_nothing_outward() -> None:
    domain = _modules("shared/tokenledger/domain")
    assert domain
    outward = ("tokenledger.service", "tokenledger.adapters", "tokenledger.http", "boto3", "botocore")
    assert _offenders(domain, outward) == []


def test_service_layer_talks_to_no_aws_sdk() -> None:
    service = _modules("shared/tokenledger/service")
    assert service
    assert _offenders(service, ("boto3", "botocore", "aws_lambda_powertools.event_handler")) == []


def test_service_layer_imports_no_http_layer() -> None:
    """Status codes and request schemas belong to `http`; use cases return domain results."""
    service = _modules("shared/tokenledger/service")
    assert _offenders(service, ("tokenledger.http",)) == []


def test_adapters_import_ports_not_use_cases() -> None:
    """An adapter implements a port: from the service layer it may import the ports, nothing else.

    `service.prediction_keys` is the predictions table's key layout (no use case in it), shared
    by the use cases that build guards on those keys and the adapter that stores them.
    """
    adapters = _modules("shared/tokenledger/adapters")
    assert adapters
    allowed = (
        "tokenledger.service.ports",
        "tokenledger.service.reconcile.ports",
        "tokenledger.service.prediction_keys",
    )
    offenders = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in adapters
        for name in sorted(_imports(path))
        if name.startswith("tokenledger.service") and name not in allowed
    ]
    assert offenders == []


def test_the_http_layer_picks_every_error_status() -> None:
    """Use cases raise coded errors; only `http` knows which status answers each code."""
    import importlib
    import pkgutil

    import tokenledger.domain
    import tokenledger.service
    from tokenledger.domain.errors import LedgerError
    from tokenledger.http.api import PROBLEM_STATUS

    for package in (tokenledger.domain, tokenledger.service):
        for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            importlib.import_module(module.name)
    errors, pending = [], [LedgerError]
    while pending:
        error = pending.pop()
        errors.append(error)
        pending.extend(error.__subclasses__())
    assert len(errors) > 20, "the walk found too few error classes"
    assert sorted(e.code for e in errors if e.code not in PROBLEM_STATUS) == []
    assert [e.__name__ for e in errors if "status" in vars(e)] == [], "a status on an error class"


def test_a_broken_invariant_is_reported_under_python_dash_o() -> None:
    """`python -O` strips asserts; the invariant checks must still fail when broken."""
    code = "from infra.invariants import require\nrequire(1 + 1 == 3, 'arithmetic broke')\n"
    run = subprocess.run([sys.executable, "-O", "-c", code], cwd=ROOT, capture_output=True, text=True, check=False)
    assert run.returncode != 0
    assert "InvariantBroken: arithmetic broke" in run.stderr


def test_the_reconciliation_adapter_imports_ports_not_use_cases() -> None:
    """adapters/scan.py depends on the reconciliation's ports, never on its use cases."""
    scan = ROOT / "shared" / "tokenledger" / "adapters" / "scan.py"
    service = sorted(name for name in _imports(scan) if name.startswith("tokenledger.service"))
    assert service == ["tokenledger.service.reconcile.ports"]


def test_service_layer_imports_no_adapter() -> None:
    """Use cases get their clock, ids and stores as parameters (bootstrap wires the adapters in)."""
    service = _modules("shared/tokenledger/service")
    assert _offenders(service, ("tokenledger.adapters",)) == []


def test_functions_import_no_adapter() -> None:
    """A handler gets its objects from the composition root (tokenledger.bootstrap), never an adapter itself."""
    functions = _modules("functions")
    assert len(functions) >= 10, "the scan found too few handlers: the paths are wrong"
    assert _offenders(functions, ("tokenledger.adapters",)) == []
