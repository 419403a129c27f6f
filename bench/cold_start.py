"""Cold start: import time of each handler module in a fresh process, against the boto3 floor.

Every DynamoDB Lambda pays `import boto3` plus creating one DynamoDB client; that is timed
the same way, in the same run, interleaved with the handlers (`ratio_to_boto3`). Each sample
is a new interpreter that imports the handler as Lambda does (`import app` with the function's
code and the layer on the path) with the environment the template sets, plus the variables
Lambda itself sets (so Powertools behaves as deployed: tracing on, as `Tracing: Active` says).
Interpreter start-up is outside the timed region (Lambda's runtime pays it for everyone).

`breakdown` then says what dominates: the import timed step by step (floor, Powertools
Logger, Tracer, pydantic, the HTTP resolver, stripe, our package, the handler module itself).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.harness import BASE_ENV, STACK
from infra.template import REPO_ROOT, FunctionSpec

FLOOR = "boto3"
_TIMER = """
import time
_t0 = time.perf_counter()
{body}
_ms = (time.perf_counter() - _t0) * 1000
import json, sys
print(json.dumps({{"ms": _ms, "modules": sorted(sys.modules)}}))
"""
FLOOR_BODY = "import boto3\nboto3.client('dynamodb')"
HANDLER_BODY = "import app"
LAYER_CACHE = REPO_ROOT / ".cache" / "bench-layer"
PIP_TIMEOUT_S = 300


def _layer_path() -> list[str]:
    """The natively installed layer, when `measure` could install it (else the venv's packages)."""
    layer = os.environ.get("BENCH_COLD_START_LAYER")
    return [layer] if layer else []


def _python() -> list[str]:
    """`-S` (no site-packages) when the layer is on the path, as Lambda has only the layer."""
    return [sys.executable, "-S"] if os.environ.get("BENCH_COLD_START_LAYER") else [sys.executable]


def _env(spec: FunctionSpec | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    env.update({k: v for k, v in BASE_ENV.items() if k != "POWERTOOLS_TRACE_DISABLED"})
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    if "BENCH_COLD_START_ENDPOINT" in os.environ:
        env["AWS_ENDPOINT_URL"] = os.environ["BENCH_COLD_START_ENDPOINT"]
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT / "shared"), *_layer_path()])
    if spec is not None:
        env.update(spec.environment)
        env.update(
            {
                "AWS_LAMBDA_FUNCTION_NAME": spec.logical_id,
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
                "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12",
                "LAMBDA_TASK_ROOT": str(spec.code_dir),
                "_HANDLER": spec.handler,
                "POWERTOOLS_LOG_LEVEL": "WARNING",
            }
        )
        env["PYTHONPATH"] = os.pathsep.join([str(spec.code_dir), str(REPO_ROOT / "shared"), *_layer_path()])
    return env


def _sample(spec: FunctionSpec | None) -> tuple[float, list[str]]:
    """Milliseconds to import, and the modules loaded by then (which steps the breakdown needs)."""
    body = FLOOR_BODY if spec is None else HANDLER_BODY
    cwd = str(spec.code_dir) if spec is not None else str(REPO_ROOT)
    done = subprocess.run(
        [*_python(), "-c", _TIMER.format(body=body)],
        env=_env(spec),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip()[-800:])
    import json

    figures = json.loads(done.stdout.strip().splitlines()[-1])
    return float(figures["ms"]), list(figures["modules"])


def measure(*, runs: int, breakdown_runs: int) -> dict[str, Any]:
    """Median import time per handler and of the floor, sampled interleaved.

    Some handlers call AWS while they import (e.g. DescribeTable); a moto server on this
    machine answers them, so those calls cost a local round trip here, a real one on AWS.
    """
    layer, how = layer_dir("native")
    with _moto_server() as endpoint:
        os.environ["BENCH_COLD_START_ENDPOINT"] = endpoint
        if layer is not None:
            os.environ["BENCH_COLD_START_LAYER"] = str(layer)
        try:
            figures = _measure(runs=runs, breakdown_runs=breakdown_runs)
        finally:
            os.environ.pop("BENCH_COLD_START_ENDPOINT", None)
            os.environ.pop("BENCH_COLD_START_LAYER", None)
    figures["_path"] = {
        "packages": f"the layer alone, {how}" if layer else f"the development virtualenv ({how})",
        "python": platform.python_version(),
    }
    return figures


@contextlib.contextmanager
def _moto_server() -> Iterator[str]:
    import boto3
    from moto.server import ThreadedMotoServer

    from infra.dynamodb_local import find_free_port
    from infra.world import create_buckets, create_secrets, create_tables

    port = find_free_port()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        session = boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name=BASE_ENV["AWS_REGION"]
        )
        create_tables(STACK, session.client("dynamodb", endpoint_url=endpoint))
        create_buckets(STACK, session.client("s3", endpoint_url=endpoint))
        create_secrets(STACK, session.client("secretsmanager", endpoint_url=endpoint), {})
        yield endpoint
    finally:
        server.stop()


def _measure(*, runs: int, breakdown_runs: int) -> dict[str, Any]:
    specs = STACK.functions()
    samples: dict[str, list[float]] = defaultdict(list)
    modules: dict[str, list[str]] = {}
    errors: dict[str, str] = {}
    for _ in range(runs):
        samples[FLOOR].append(_sample(None)[0])
        for name, spec in specs.items():
            if name in errors:
                continue
            try:
                ms, modules[name] = _sample(spec)
            except RuntimeError as failure:
                errors[name] = str(failure)
                continue
            samples[name].append(ms)
    floor_ms = statistics.median(samples[FLOOR])
    out: dict[str, Any] = {
        FLOOR: {"import_ms_median": round(floor_ms, 1), "ratio_to_boto3": 1.0, "samples": len(samples[FLOOR])}
    }
    for name in specs:
        if name in errors:
            out[name] = {"error": errors[name]}
            continue
        median = statistics.median(samples[name])
        out[name] = {
            "import_ms_median": round(median, 1),
            "ratio_to_boto3": round(median / floor_ms, 2),
            "samples": len(samples[name]),
            "breakdown": breakdown(specs[name], modules[name], runs=breakdown_runs),
        }
    return out


# What a handler's import is made of, in the order a handler pays for it. Each step is timed
# in the same process after the previous ones, so the steps add up to the whole import; a
# step counts only for handlers that import its module at all.
STEPS: list[tuple[str, str, str | None]] = [
    ("floor: boto3 + DynamoDB client", "import boto3\nboto3.client('dynamodb')", None),
    (
        "Powertools package + Logger",
        "from aws_lambda_powertools import Logger\nLogger()",
        "aws_lambda_powertools.logging",
    ),
    ("Powertools Tracer (X-Ray SDK + patching)", "from aws_lambda_powertools import Tracer\nTracer()", "aws_xray_sdk"),
    ("pydantic", "import pydantic", "pydantic"),
    (
        "Powertools HTTP resolver + OpenAPI validation",
        "from aws_lambda_powertools.event_handler import APIGatewayHttpResolver\n"
        "from aws_lambda_powertools.event_handler.openapi import params\n"
        "APIGatewayHttpResolver(enable_validation=True)",
        "aws_lambda_powertools.event_handler.openapi",
    ),
    ("stripe SDK", "import stripe", "stripe"),
]
_BREAKDOWN = """
import json, time
_times = {{}}
{steps}
print(json.dumps(_times))
"""


def _breakdown_script(modules: list[str]) -> tuple[str, list[str]]:
    loaded = set(modules)
    steps = [
        (label, code)
        for label, code, trigger in STEPS
        if trigger is None or any(m == trigger or m.startswith(trigger + ".") for m in loaded)
    ]
    ours = sorted(m for m in loaded if m.startswith("tokenledger."))
    if ours:
        steps.append(("tokenledger (domain, service, adapters)", "\n".join(f"import {m}" for m in ours)))
    steps.append(("the handler module (routes, models, clients)", HANDLER_BODY))
    blocks = []
    for label, code in steps:
        timed = "_t = time.perf_counter()\n" + code + f"\n_times[{label!r}] = (time.perf_counter() - _t) * 1000"
        blocks.append(timed)
    return _BREAKDOWN.format(steps="\n".join(blocks)), [label for label, _ in steps]


def breakdown(spec: FunctionSpec, modules: list[str], *, runs: int) -> list[dict[str, Any]]:
    """Median milliseconds of each step of this handler's import, in import order."""
    import json

    script, labels = _breakdown_script(modules)
    samples: dict[str, list[float]] = defaultdict(list)
    for _ in range(runs):
        done = subprocess.run(
            [*_python(), "-c", script],
            env=_env(spec),
            cwd=str(spec.code_dir),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            return [{"step": "error", "detail": done.stderr.strip()[-300:]}]
        for label, ms in json.loads(done.stdout.strip().splitlines()[-1]).items():
            samples[label].append(ms)
    return [{"step": label, "ms": round(statistics.median(samples[label]), 1)} for label in labels]


# ---------------------------------------------------------------------- deployment size
def _tree_bytes(path: Path) -> int:
    return sum(
        f.stat().st_size for f in path.rglob("*") if f.is_file() and "__pycache__" not in f.parts and f.suffix != ".pyc"
    )


def layer_dir(target_platform: str = "arm64") -> tuple[Path | None, str]:
    """The layer's dependencies installed with `pip install --target`, once, cached in .cache/.

    `arm64`: the wheels SAM would ship for arm64/python3.12 (for the size). `native`: wheels
    for this interpreter (for the import timings: the layer alone on the path, as in Lambda,
    not the development virtualenv with its extra packages).
    """
    requirements = REPO_ROOT / "shared" / "requirements.txt"
    digest = hashlib.sha256(requirements.read_bytes() + target_platform.encode()).hexdigest()[:16]
    target = LAYER_CACHE / f"{target_platform}-{digest}"
    if (target / ".complete").is_file():
        return target, (target / ".complete").read_text().strip() + " (cached)"
    LAYER_CACHE.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="layer-", dir=LAYER_CACHE))
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--target", str(work)]
    how = f"wheels for this interpreter (Python {sys.version_info.major}.{sys.version_info.minor})"
    if target_platform == "arm64":
        how = "arm64 manylinux wheels for cp312"
        command += ["--platform", "manylinux2014_aarch64", "--implementation", "cp"]
        command += ["--python-version", "3.12", "--only-binary=:all:"]
    done = subprocess.run(
        [*command, "-r", str(requirements)], check=False, capture_output=True, text=True, timeout=PIP_TIMEOUT_S
    )
    if done.returncode != 0:
        shutil.rmtree(work, ignore_errors=True)
        return None, "pip install failed: " + done.stderr.strip()[-300:]
    (work / ".complete").write_text(how + "\n")
    if target.exists():
        shutil.rmtree(work, ignore_errors=True)
    else:
        work.rename(target)
    return target, how


def deployment_sizes() -> dict[str, Any]:
    layer, how = layer_dir()
    out: dict[str, Any] = {"functions": {}}
    package_bytes = _tree_bytes(REPO_ROOT / "shared" / "tokenledger")
    if layer is not None:
        dependencies = _tree_bytes(layer)
        per_package: dict[str, int] = defaultdict(int)
        for child in layer.iterdir():
            if child.name.startswith("."):
                continue
            key = child.name.split("-")[0].split(".")[0].lower()
            per_package[key] += _tree_bytes(child) if child.is_dir() else child.stat().st_size
        out["layer"] = {
            "bytes": dependencies + package_bytes,
            "mb": round((dependencies + package_bytes) / 2**20, 1),
            "tokenledger_kb": round(package_bytes / 1024, 1),
            "largest": dict(sorted(per_package.items(), key=lambda kv: kv[1], reverse=True)[:6]),
            "how": how,
        }
    else:
        out["layer"] = {"error": how}
    for name, spec in STACK.functions().items():
        size = _tree_bytes(spec.code_dir)
        with_layer = (size + out["layer"].get("bytes", 0)) / 2**20
        out["functions"][name] = {"code_bytes": size, "with_layer_mb": round(with_layer, 1)}
    return out
