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
import dataclasses
import hashlib
import json
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

from bench.harness import BASE_ENV, STACK, secret_values
from infra.template import REPO_ROOT, FunctionSpec

FLOOR = "boto3"
_TIMER = """
import time
_t0 = time.perf_counter(); _c0 = time.process_time()
{body}
_ms = (time.perf_counter() - _t0) * 1000; _cpu = (time.process_time() - _c0) * 1000
import json, sys
_out = {{"ms": _ms, "cpu_ms": _cpu, "modules": sorted(sys.modules)}}
{after}
print(json.dumps(_out))
"""
# After the import: the first request (the resolver's first-route work happens here, not at
# import), then, for the warm figures, more requests through the same module, each timed with
# the time spent inside DynamoDB calls (botocore's `_make_api_call`) apart.
_AFTER_IMPORT = """
import os, uuid
_spec = json.loads(open(os.environ["BENCH_REQUESTS"]).read())
_handler = getattr(app, _spec["handler"])

class _Context:
    function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "bench")
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:" + function_name
    memory_limit_in_mb = 512
    aws_request_id = "bench"
    log_group_name = "/aws/lambda/bench"
    log_stream_name = "bench"
    def get_remaining_time_in_millis(self):
        return 10000

def _call(event):
    event = json.loads(json.dumps(event))
    if "idempotency-key" in event.get("headers", {}):
        event["headers"]["idempotency-key"] = "bench-" + uuid.uuid4().hex
    t0 = time.perf_counter(); c0 = time.process_time()
    reply = _handler(event, _Context())
    return (time.perf_counter() - t0) * 1000, (time.process_time() - c0) * 1000, reply

if _spec.get("first") is not None:
    _ms, _cpu, _reply = _call(_spec["first"])
    _out.update(first_ms=_ms, first_cpu_ms=_cpu, first_status=_reply.get("statusCode"))
if _spec.get("warm"):
    import botocore.client
    _in_aws = [0.0]
    _make = botocore.client.BaseClient._make_api_call
    def _timed(self, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return _make(self, *args, **kwargs)
        finally:
            _in_aws[0] += time.perf_counter() - t0
    botocore.client.BaseClient._make_api_call = _timed
    _warm = []
    for _ in range(_spec["warm"]):
        _in_aws[0] = 0.0
        _ms, _cpu, _reply = _call(_spec["warm_event"])
        _warm.append([_ms, _ms - _in_aws[0] * 1000, _reply.get("statusCode")])
    _out["warm"] = _warm
"""
FLOOR_BODY = "import boto3\nboto3.client('dynamodb')"
HANDLER_BODY = "import app"
LAYER_CACHE = REPO_ROOT / ".cache" / "bench-layer"
PIP_TIMEOUT_S = 300


def _layer_path() -> list[str]:
    """The layer built for this machine (`layer_dir`), when it could be built, else the sources."""
    layer = os.environ.get("BENCH_COLD_START_LAYER")
    return [layer] if layer else [str(REPO_ROOT / "shared")]


def _python() -> list[str]:
    """`-S` (no site-packages) when the layer is on the path, as Lambda has only the layer."""
    return [sys.executable, "-S"] if os.environ.get("BENCH_COLD_START_LAYER") else [sys.executable]


def _env(spec: FunctionSpec | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    env.update({k: v for k, v in BASE_ENV.items() if k != "POWERTOOLS_TRACE_DISABLED"})
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    if "BENCH_COLD_START_ENDPOINT" in os.environ:
        env["AWS_ENDPOINT_URL"] = os.environ["BENCH_COLD_START_ENDPOINT"]
    env["PYTHONPATH"] = os.pathsep.join(_layer_path())
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
        env["PYTHONPATH"] = os.pathsep.join([str(spec.code_dir), *_layer_path()])
        if "STRIPE_API_BASE" in spec.environment and "BENCH_COLD_START_STRIPE" in os.environ:
            env["STRIPE_API_BASE"] = os.environ["BENCH_COLD_START_STRIPE"]  # the fake Stripe
    return env


def _sample(spec: FunctionSpec | None, requests: Path | None = None) -> dict[str, Any]:
    """One fresh interpreter: import wall and CPU ms, modules loaded, and the requests' figures."""
    body = FLOOR_BODY if spec is None else HANDLER_BODY
    after = _AFTER_IMPORT if spec is not None and requests is not None else ""
    cwd = str(spec.code_dir) if spec is not None else str(REPO_ROOT)
    env = _env(spec)
    if after:
        env["BENCH_REQUESTS"] = str(requests)
    done = subprocess.run(
        [*_python(), "-c", _TIMER.format(body=body, after=after)],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip()[-800:])
    import json

    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def measure(*, runs: int, breakdown_runs: int, warm_requests: int = 200) -> dict[str, Any]:
    """Median import time per handler and of the floor, sampled interleaved.

    Some handlers call AWS while they import (e.g. DescribeTable); a moto server on this
    machine answers them, so those calls cost a local round trip here, a real one on AWS.
    """
    from infra.fake_stripe import FakeStripe, serve

    layer, how = layer_dir("native")
    fake_stripe = FakeStripe(api_key=BENCH_STRIPE_KEY, checkout_url="https://checkout.stripe.test")
    with (
        _moto_server() as endpoint,
        serve(fake_stripe) as stripe_base,
        tempfile.TemporaryDirectory(prefix="bench-requests-") as scratch,
    ):
        os.environ["BENCH_COLD_START_ENDPOINT"] = endpoint
        os.environ["BENCH_COLD_START_STRIPE"] = stripe_base
        if layer is not None:
            os.environ["BENCH_COLD_START_LAYER"] = str(layer)
        try:
            requests = write_requests(Path(scratch), endpoint, warm_requests=warm_requests)
            specs = _code_as_deployed(Path(scratch))
            figures = _measure(specs, runs=runs, breakdown_runs=breakdown_runs, requests=requests)
            if layer is not None:
                packages = _measure_packages_without_bytecode(specs, runs=runs, requests=requests)
                os.environ["BENCH_COLD_START_LAYER"] = str(without_bytecode(layer))
                figures["_without_bytecode"] = _measure_without_bytecode(specs, runs=runs, requests=requests)
                figures["_without_bytecode"]["packages"] = packages
        finally:
            os.environ.pop("BENCH_COLD_START_ENDPOINT", None)
            os.environ.pop("BENCH_COLD_START_STRIPE", None)
            os.environ.pop("BENCH_COLD_START_LAYER", None)
    figures["_path"] = {
        "packages": f"the layer alone, {how}" if layer else f"the development virtualenv ({how})",
        "python": platform.python_version(),
    }
    return figures


# ---------------------------------------------------------------------- the first request
BENCH_USER = "bench-cold-user"
COMMITMENT_ROUTE = ("POST", "/v1/commitments")
COMMITMENT_BODY = {"prediction_id": "bench-prediction", "amount": 1}


def first_request(spec: FunctionSpec) -> dict[str, Any] | None:
    """The event of this function's first request: a commitment for the writes function, else
    its first GET route (its first route if it has none), as an admin caller (so admin routes
    run their code). Path parameters are filled with the bench user; a POST other than the
    commitment sends `{}`, which still builds and runs the route's validation (a 422).
    Functions without an HTTP route (triggers, schedules) have none.
    """
    from infra.events import http_event

    routes = [r for r in STACK.routes() if r.function == spec.logical_id]
    if not routes:
        return None
    by_key = {(r.method, r.path): r for r in routes}
    route = by_key.get(COMMITMENT_ROUTE) or next((r for r in routes if r.method == "GET"), routes[0])
    path = route.path
    params: dict[str, str] = {}
    while "{" in path:
        name = path[path.index("{") + 1 : path.index("}")]
        params[name.rstrip("+")] = BENCH_USER
        path = path.replace("{" + name + "}", BENCH_USER, 1)
    headers = {"content-type": "application/json", "idempotency-key": "replaced-per-request"}
    body = None
    if route.method in ("POST", "PUT", "PATCH"):
        body = json.dumps(COMMITMENT_BODY if (route.method, route.path) == COMMITMENT_ROUTE else {})
    claims = {"sub": BENCH_USER, "cognito:groups": "[admin]"} if route.authorized else None
    event = http_event(route, path=path, path_parameters=params, headers=headers, body=body, claims=claims)
    return {"route": route.route_key, "event": event}


def write_requests(scratch: Path, endpoint: str, *, warm_requests: int) -> dict[str, Path]:
    """One JSON file per function: its first request, and for the writes function the warm loop;
    for the checkout function also a valid first request (`VALID_KEY`: a session for the
    catalog's first package, from the fake Stripe), as its first request in the table is `{}`."""
    from tokenledger.domain.catalog import load_catalog
    from tokenledger.service.checkout import CHECKOUT_ROUTE

    _open_bench_account(endpoint)
    out: dict[str, Path] = {}
    for name, spec in STACK.functions().items():
        first = first_request(spec)
        if first is None:
            continue
        plan: dict[str, Any] = {"handler": spec.handler_function, "route": first["route"], "first": first["event"]}
        path = scratch / f"{name}.json"
        path.write_text(json.dumps(plan))
        out[name] = path
        if first["route"] == CHECKOUT_ROUTE:
            valid = json.loads(json.dumps(first["event"]))
            valid["body"] = json.dumps({"package_id": load_catalog().packages[0].package_id})
            path = scratch / f"{name}-valid.json"
            path.write_text(json.dumps({**plan, "route": f"{CHECKOUT_ROUTE} (a package)", "first": valid}))
            out[name + VALID_KEY] = path
        if first["route"] == " ".join(COMMITMENT_ROUTE):
            warm = scratch / f"{name}-warm.json"
            warm.write_text(json.dumps({**plan, "warm": warm_requests, "warm_event": first["event"]}))
            out[WARM_KEY] = warm
            out[WARM_KEY + ":function"] = Path(name)
    return out


WARM_KEY = "_warm_commitment"
VALID_KEY = ":valid"
BENCH_STRIPE_KEY = "sk_test_bench_" + "0" * 24  # the fake Stripe's key, in the checkout's secret


def _open_bench_account(endpoint: str) -> None:
    """The bench user's account, with tokens for every commitment the samples make."""
    import boto3

    from tokenledger.bootstrap import Settings, build_admin

    tables = STACK.environment()
    settings = Settings(
        accounts_table=tables["ACCOUNTS_TABLE"],
        entries_table=tables["ENTRIES_TABLE"],
        idempotency_table=tables["IDEMPOTENCY_TABLE"],
    )
    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=BASE_ENV["AWS_REGION"]
    )
    admin = build_admin(settings, dynamodb=session.client("dynamodb", endpoint_url=endpoint))
    admin.open_account(BENCH_USER, welcome_grant_tokens=1_000_000)


@contextlib.contextmanager
def _moto_server() -> Iterator[str]:
    import boto3
    from moto.server import ThreadedMotoServer

    from infra.dynamodb_local import find_free_port
    from infra.local import STRIPE_API_KEY_SECRET_ENV
    from infra.world import create_resources, secret_named_by

    port = find_free_port()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        session = boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name=BASE_ENV["AWS_REGION"]
        )
        secrets = secret_values()
        api_key_secret = secret_named_by(STACK, STRIPE_API_KEY_SECRET_ENV)
        if api_key_secret:  # the checkout's API key secret: the fake Stripe's key
            secrets[api_key_secret] = BENCH_STRIPE_KEY
        create_resources(STACK, secrets, client=lambda service: session.client(service, endpoint_url=endpoint))
        yield endpoint
    finally:
        server.stop()


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 1)


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(fraction * len(ordered)))], 1)


def _code_as_deployed(scratch: Path) -> dict[str, FunctionSpec]:
    """Each function's package as `sam build` makes it: the function's own recipe's output
    (`function_package`) for a function built by a Makefile, else its code folder copied
    without bytecode, as SAM's python builder ships it (so .pyc files left by the tests in the
    working tree do not make the handler modules look cheaper)."""
    specs = {}
    for name, spec in STACK.functions().items():
        code = scratch / "code" / name
        package, _how = function_package(spec) if recipe_of(name) else (None, "")
        if package is not None:
            shutil.copytree(package, code)
            _refresh_sources(spec.code_dir, code, TASK_ROOT, pattern="*.py")
        else:
            shutil.copytree(spec.code_dir, code, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        specs[name] = dataclasses.replace(spec, code_dir=code)
    return specs


def _measure_without_bytecode(
    specs: dict[str, FunctionSpec], *, runs: int, requests: dict[str, Path]
) -> dict[str, Any]:
    """The floor and the writes function again, from a layer without bytecode (SAM's own builder)."""
    name = str(requests[WARM_KEY + ":function"]) if WARM_KEY + ":function" in requests else next(iter(specs))
    floor: list[float] = []
    handler: list[float] = []
    for _ in range(runs):
        floor.append(_sample(None)["cpu_ms"])
        handler.append(_sample(specs[name])["cpu_ms"])
    return {"function": name, "floor_cpu_ms_median": _median(floor), "import_cpu_ms_median": _median(handler)}


def _measure_packages_without_bytecode(
    specs: dict[str, FunctionSpec], *, runs: int, requests: dict[str, Path]
) -> dict[str, Any]:
    """Each function built by its own recipe, import and first request (a valid one, where the
    table's is refused) with its package as built and without its bytecode (what SAM's python
    builder would ship), sampled in pairs; the layer has its bytecode in both."""
    bare = {
        name: dataclasses.replace(spec, code_dir=without_bytecode(spec.code_dir, spec.code_dir.name + "-no-bytecode"))
        for name, spec in specs.items()
        if recipe_of(name)
    }
    plans = {name: requests.get(name + VALID_KEY, requests.get(name)) for name in bare}
    taken: dict[str, dict[str, list[dict[str, Any]]]] = {n: {"with": [], "without": []} for n in bare}
    for _ in range(runs):
        for name, bare_spec in bare.items():
            taken[name]["with"].append(_sample(specs[name], plans[name]))
            taken[name]["without"].append(_sample(bare_spec, plans[name]))
    out: dict[str, Any] = {}
    for name, pair in taken.items():
        plan = plans[name]
        out[name] = {"first_request": json.loads(plan.read_text())["route"] if plan else None}
        for variant, samples in pair.items():
            row = {"import_cpu_ms_median": _median([s["cpu_ms"] for s in samples])}
            if all("first_cpu_ms" in s for s in samples):
                row["first_status"] = samples[-1]["first_status"]
                row["first_cpu_ms_median"] = _median([s["first_cpu_ms"] for s in samples])
                row["first_ms_median"] = _median([s["first_ms"] for s in samples])
                row["import_and_first_cpu_ms_median"] = _median([s["cpu_ms"] + s["first_cpu_ms"] for s in samples])
            out[name][variant] = row
    return out


def _measure(
    specs: dict[str, FunctionSpec], *, runs: int, breakdown_runs: int, requests: dict[str, Path]
) -> dict[str, Any]:
    samples: dict[str, list[dict[str, Any]]] = defaultdict(list)
    modules: dict[str, list[str]] = {}
    errors: dict[str, str] = {}
    for _ in range(runs):
        samples[FLOOR].append(_sample(None))
        for name, spec in specs.items():
            if name in errors:
                continue
            try:
                figures = _sample(spec, requests.get(name))
            except RuntimeError as failure:
                errors[name] = str(failure)
                continue
            modules[name] = figures.pop("modules")
            samples[name].append(figures)
    floor_ms = statistics.median(s["ms"] for s in samples[FLOOR])
    floor_cpu = statistics.median(s["cpu_ms"] for s in samples[FLOOR])
    out: dict[str, Any] = {
        FLOOR: {
            "import_ms_median": round(floor_ms, 1),
            "import_cpu_ms_median": round(floor_cpu, 1),
            "ratio_to_boto3": 1.0,
            "cpu_ratio_to_boto3": 1.0,
            "samples": len(samples[FLOOR]),
        }
    }
    for name, spec in specs.items():
        if name in errors:
            out[name] = {"error": errors[name]}
            continue
        taken = samples[name]
        median = statistics.median(s["ms"] for s in taken)
        cpu = statistics.median(s["cpu_ms"] for s in taken)
        row: dict[str, Any] = {
            "import_ms_median": round(median, 1),
            "import_cpu_ms_median": round(cpu, 1),
            "ratio_to_boto3": round(median / floor_ms, 2),
            "cpu_ratio_to_boto3": round(cpu / floor_cpu, 2),
            "samples": len(taken),
        }
        if all("first_ms" in s for s in taken):
            row["first_request"] = {
                "route": json.loads(requests[name].read_text())["route"],
                "status": taken[-1]["first_status"],
                "ms_median": _median([s["first_ms"] for s in taken]),
                "cpu_ms_median": _median([s["first_cpu_ms"] for s in taken]),
            }
            row["import_and_first_ratio_to_boto3"] = round(
                statistics.median(s["ms"] + s["first_ms"] for s in taken) / floor_ms, 2
            )
        row["breakdown"] = breakdown(spec, modules[name], runs=breakdown_runs)
        out[name] = row
    if WARM_KEY in requests:
        out[WARM_KEY] = warm_commitment(specs[str(requests[WARM_KEY + ":function"])], requests[WARM_KEY])
    return out


def warm_commitment(spec: FunctionSpec, plan: Path) -> dict[str, Any]:
    """p50/p99 of commitments through the real handler of a warm environment (after its first)."""
    try:
        figures = _sample(spec, plan)
    except RuntimeError as failure:
        return {"error": str(failure)}
    warm = figures["warm"]
    total = [w[0] for w in warm]
    ours = [w[1] for w in warm]
    return {
        "function": spec.logical_id,
        "requests": len(warm),
        "statuses": sorted({w[2] for w in warm}),
        "p50_ms": _percentile(total, 0.50),
        "p99_ms": _percentile(total, 0.99),
        "outside_dynamodb_p50_ms": _percentile(ours, 0.50),
        "outside_dynamodb_p99_ms": _percentile(ours, 0.99),
    }


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
        "Powertools HTTP resolver (our validation: tokenledger.http.shapes)",
        "from aws_lambda_powertools.event_handler import APIGatewayHttpResolver\nAPIGatewayHttpResolver()",
        "aws_lambda_powertools.event_handler.api_gateway",
    ),
    (
        "Powertools OpenAPI validation",
        "from aws_lambda_powertools.event_handler.openapi import params",
        "aws_lambda_powertools.event_handler.openapi.params",
    ),
    ("stripe SDK", "import stripe", "stripe"),
]
# The collector is off during the steps, as `tokenledger.coldstart` has it during a function's
# init on Lambda (its point 5), so the steps add up to the import the table measures.
_BREAKDOWN = """
import gc, json, time
gc.disable()
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


# ---------------------------------------------------------------------- the layer
def _tree_bytes(path: Path, *, bytecode: bool = True) -> int:
    return sum(
        f.stat().st_size
        for f in path.rglob("*")
        if f.is_file() and (bytecode or ("__pycache__" not in f.parts and f.suffix != ".pyc"))
    )


TASK_ROOT = "/var/task"  # where Lambda unpacks a function's package (LAMBDA_TASK_ROOT)
LAYER_ROOT = "/opt/python"  # where the layer's python/ folder is mounted


def recipe_of(logical_id: str) -> Path | None:
    """The Makefile `sam build` runs for a resource with `BuildMethod: makefile`: its
    `ContextPath`'s, else its code folder's. None for SAM's own builders."""
    resource = STACK.resources[logical_id]
    metadata = resource.get("Metadata") or {}
    if metadata.get("BuildMethod") != "makefile":
        return None
    props = resource.get("Properties", {})
    folder = metadata.get("ContextPath") or props.get("CodeUri") or props.get("ContentUri")
    return REPO_ROOT / str(folder) / "Makefile"


def _recipe_build(logical_id: str, source: Path, target_platform: str) -> tuple[Path | None, str]:
    """`make build-<logical_id>` of the resource's recipe, run in `source` as `sam build` does
    (ARTIFACTS_DIR set), with this interpreter; `native`: this machine's wheels, `arm64`: the
    recipe's own (Lambda's). Cached by the recipe, the requirements, the platform and this
    Python; returns the artifacts folder, or None and why."""
    recipe = recipe_of(logical_id)
    if recipe is None:
        return None, f"{logical_id} is not built by a Makefile"
    requirements = source / "requirements.txt"
    key = recipe.read_bytes() + requirements.read_bytes() + target_platform.encode() + sys.version.encode()
    target = LAYER_CACHE / f"{logical_id}-{target_platform}-{hashlib.sha256(key).hexdigest()[:16]}"
    how = f"wheels for this interpreter (Python {sys.version_info.major}.{sys.version_info.minor})"
    if target_platform == "arm64":
        how = "arm64 manylinux wheels for cp312"
    how += f", with bytecode ({recipe.relative_to(REPO_ROOT)})"
    if (target / ".complete").is_file():
        return target, how + " (dependencies cached)"
    LAYER_CACHE.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"{logical_id}-", dir=LAYER_CACHE))
    command = ["make", "--no-print-directory", "--makefile", str(recipe), f"build-{logical_id}"]
    command += [f"ARTIFACTS_DIR={work}", f"PYTHON={sys.executable}"]
    if target_platform == "native":
        command.append("PIP_PLATFORM=")
    done = subprocess.run(command, cwd=source, check=False, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    if done.returncode != 0:
        shutil.rmtree(work, ignore_errors=True)
        return None, f"{logical_id} build failed: " + (done.stderr or done.stdout).strip()[-300:]
    (work / ".complete").write_text(how + "\n")
    if target.exists():
        shutil.rmtree(work, ignore_errors=True)
    else:
        work.rename(target)
    return target, how


def layer_dir(target_platform: str = "arm64") -> tuple[Path | None, str]:
    """The SharedLayer built by its own recipe (`shared/Makefile`, as `sam build` does), cached.

    `arm64`: the wheels SAM ships for arm64/python3.12 (for the size). `native`: wheels for
    this interpreter, compiled by it (for the import timings: the layer alone on the path, as
    in Lambda, not the development virtualenv with its extra packages). The dependencies are
    cached by the recipe and requirements; tokenledger is copied and compiled afresh each
    time, so the figures are of the code as it is. Returns the folder that goes on sys.path.
    """
    built, how = _recipe_build("SharedLayer", REPO_ROOT / "shared", target_platform)
    if built is None:
        return None, how
    python = built / "python"
    _refresh_sources(REPO_ROOT / "shared" / "tokenledger", python / "tokenledger", LAYER_ROOT + "/tokenledger")
    return python, how


def function_package(spec: FunctionSpec, target_platform: str = "native") -> tuple[Path | None, str]:
    """A function built by its own recipe (the Stripe functions: `stripe` and its dependencies
    with bytecode, `shared/Makefile`), as `layer_dir` builds the layer; cached the same way.
    Its own modules are as they were at build time: `_code_as_deployed` refreshes them."""
    return _recipe_build(spec.logical_id, spec.code_dir, target_platform)


def _refresh_sources(source: Path, into: Path, lambda_root: str, *, pattern: str | None = None) -> None:
    """`source` as it is now (a package folder, or its files matching `pattern`) copied into
    `into` and compiled the way the recipes compile, naming the files as under `lambda_root`."""
    import compileall
    import py_compile

    mode = py_compile.PycInvalidationMode.UNCHECKED_HASH
    if pattern is None:
        shutil.rmtree(into, ignore_errors=True)
        shutil.copytree(source, into, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        compileall.compile_dir(str(into), quiet=1, stripdir=str(into), prependdir=lambda_root, invalidation_mode=mode)
        return
    for module in sorted(source.glob(pattern)):
        shutil.copyfile(module, into / module.name)
        compileall.compile_file(
            str(into / module.name),
            quiet=1,
            force=True,
            stripdir=str(into),
            prependdir=lambda_root,
            invalidation_mode=mode,
        )


def without_bytecode(tree: Path, name: str = "no-bytecode") -> Path:
    """A copy of a package without .pyc files, beside it: what SAM's own Python builder would ship."""
    bare = tree.parent / name
    shutil.rmtree(bare, ignore_errors=True)
    shutil.copytree(tree, bare, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return bare


def deployment_sizes() -> dict[str, Any]:
    layer, how = layer_dir()
    out: dict[str, Any] = {"functions": {}}
    if layer is not None:
        total = _tree_bytes(layer)
        per_package: dict[str, int] = defaultdict(int)
        for child in layer.iterdir():
            if child.name.startswith("."):
                continue
            key = child.name.split("-")[0].split(".")[0].lower()
            per_package[key] += _tree_bytes(child) if child.is_dir() else child.stat().st_size
        out["layer"] = {
            "bytes": total,
            "mb": round(total / 2**20, 1),
            "mb_without_bytecode": round(_tree_bytes(layer, bytecode=False) / 2**20, 1),
            "tokenledger_kb": round(_tree_bytes(layer / "tokenledger") / 1024, 1),
            "largest": dict(sorted(per_package.items(), key=lambda kv: kv[1], reverse=True)[:6]),
            "how": how,
        }
    else:
        out["layer"] = {"error": how}
    for name, spec in STACK.functions().items():
        # A function built by its own recipe ships what it builds (its dependencies, bytecode).
        package = function_package(spec, "arm64")[0] if recipe_of(name) else None
        size = _tree_bytes(package) if package is not None else _tree_bytes(spec.code_dir, bytecode=False)
        with_layer = (size + out["layer"].get("bytes", 0)) / 2**20
        out["functions"][name] = {"code_bytes": size, "with_layer_mb": round(with_layer, 1)}
    return out
