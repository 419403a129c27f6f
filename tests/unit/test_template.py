"""template.yaml is what a team deploys: these tests fail when it stops being safe to deploy.

They read the template the way the local stack does (`infra.template.load_template`), so a
function, table, route or alarm added tomorrow is held to the same rules as today's.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest

from infra.template import REPO_ROOT, Stack, load_template

TEMPLATE = load_template()
RESOURCES: dict[str, dict[str, Any]] = TEMPLATE["Resources"]
PARAMETERS: dict[str, dict[str, Any]] = TEMPLATE.get("Parameters", {})
GLOBAL_FUNCTION: dict[str, Any] = TEMPLATE.get("Globals", {}).get("Function", {})
STRIPE_WEBHOOK_ROUTE = "POST /v1/webhooks/stripe"
API_INTEGRATION_TIMEOUT_S = 30  # HTTP API gives up on an integration after 30 s
COGNITO_TRIGGER_TIMEOUT_S = 5  # Cognito waits at most 5 s for a trigger
ASYNC_EVENT_TYPES = {"Schedule", "ScheduleV2", "EventBridgeRule", "CloudWatchEvent", "S3", "SNS"}


def of_type(kind: str) -> dict[str, dict[str, Any]]:
    return {name: resource for name, resource in RESOURCES.items() if resource.get("Type") == kind}


FUNCTIONS = of_type("AWS::Serverless::Function")
TABLES = of_type("AWS::DynamoDB::Table")
BUCKETS = of_type("AWS::S3::Bucket")
QUEUES = of_type("AWS::SQS::Queue")
ALARMS = of_type("AWS::CloudWatch::Alarm")


STATE_MACHINES = of_type("AWS::Serverless::StateMachine")
SCHEDULE_EVENT_TYPES = {"Schedule", "ScheduleV2", "EventBridgeRule", "CloudWatchEvent"}


def props(logical_id: str) -> dict[str, Any]:
    return RESOURCES[logical_id].get("Properties", {}) or {}


def effective(function: str, key: str) -> Any:
    """A function property as deployed: its own value, else the Globals' value."""
    return props(function).get(key, GLOBAL_FUNCTION.get(key))


def events(function: str, *types: str) -> dict[str, dict[str, Any]]:
    found = props(function).get("Events", {}) or {}
    return {name: event for name, event in found.items() if not types or event.get("Type") in types}


def functions_with_event(*types: str) -> list[str]:
    return sorted(f for f in FUNCTIONS if events(f, *types))


SCHEDULED = sorted(r for r in {**FUNCTIONS, **STATE_MACHINES} if events(r, *SCHEDULE_EVENT_TYPES))


def refs_in(value: Any) -> set[str]:
    """Every logical id or parameter a value points at with Ref, GetAtt or ${...} in Sub."""
    found: set[str] = set()
    if isinstance(value, list):
        for item in value:
            found |= refs_in(item)
    elif isinstance(value, dict):
        for key, arg in value.items():
            if key == "Ref":
                found.add(str(arg))
            elif key == "Fn::GetAtt":
                found.add(str(arg[0] if isinstance(arg, list) else str(arg).split(".")[0]))
            elif key == "Fn::Sub":
                text = arg if isinstance(arg, str) else arg[0]
                found |= {name.split(".")[0] for name in re.findall(r"\$\{([^}!]+)\}", text)}
            else:
                found |= refs_in(arg)
    return found


def is_object_prefix(resource: Any) -> bool:
    """`${Bucket.Arn}/some/prefix/*`: S3 can only scope object access to a key prefix this way."""
    text = resource.get("Fn::Sub") if isinstance(resource, dict) else None
    match = re.fullmatch(
        r"\$\{(\w+)\.Arn\}/[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*/\*", text if isinstance(text, str) else ""
    )
    return bool(match) and RESOURCES.get(match.group(1), {}).get("Type") == "AWS::S3::Bucket"


def statements(function: str) -> list[dict[str, Any]]:
    found = []
    for policy in props(function).get("Policies", []) or []:
        assert isinstance(policy, dict) and set(policy) == {"Statement"}, (
            f"{function}: only inline statements, so each action and resource is named; got {policy!r}"
        )
        found.extend(policy["Statement"])
    return found


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def alarm_metrics(alarm: str) -> list[dict[str, Any]]:
    """The metrics an alarm watches: its single metric or each MetricStat of its metric math."""
    p = props(alarm)
    if "MetricName" in p:
        return [{"Namespace": p["Namespace"], "MetricName": p["MetricName"], "Dimensions": p.get("Dimensions", [])}]
    return [query["MetricStat"]["Metric"] for query in p.get("Metrics", []) if "MetricStat" in query]


def watched(namespace: str, metric: str) -> list[tuple[str, dict[str, Any]]]:
    return [
        (alarm, m)
        for alarm in ALARMS
        for m in alarm_metrics(alarm)
        if m["Namespace"] == namespace and m["MetricName"] == metric
    ]


def dimension_refs(metric: dict[str, Any]) -> set[str]:
    return refs_in([d["Value"] for d in metric.get("Dimensions", [])])


def http_routes() -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (function, f"{str(e['Properties']['Method']).upper()} {e['Properties']['Path']}", e["Properties"])
        for function in FUNCTIONS
        for e in events(function, "HttpApi").values()
    ]


# ------------------------------------------------------------------ least privilege


@pytest.mark.parametrize("function", sorted(FUNCTIONS) + sorted(STATE_MACHINES))
def test_policy_names_every_action_and_resource_without_wildcards(function: str) -> None:
    found = statements(function)
    assert found, f"{function} has no inline policy: SAM would give it no access, or someone adds a managed one"
    for statement in found:
        assert not {"NotAction", "NotResource"} & set(statement), f"{function}: NotAction/NotResource grant too much"
        for action in as_list(statement["Action"]):
            assert isinstance(action, str) and re.fullmatch(r"[a-z0-9-]+:[A-Za-z0-9]+", action), (
                f"{function}: action {action!r} is not one named action (no wildcard)"
            )
        for resource in as_list(statement["Resource"]):
            assert isinstance(resource, dict), (
                f"{function}: resource {resource!r} must be a Ref/GetAtt/Sub, not a string"
            )
            assert "*" not in str(resource) or is_object_prefix(resource), f"{function}: wildcard in {resource!r}"
            targets = refs_in(resource) - {"AWS::Region", "AWS::AccountId", "AWS::Partition"}
            assert targets, f"{function}: resource {resource!r} names no resource of the template"
            for target in targets:
                assert target in RESOURCES or target in PARAMETERS, f"{function}: {target} is not in the template"


@pytest.mark.parametrize("function", sorted(FUNCTIONS))
def test_function_policy_names_only_indexes_that_exist(function: str) -> None:
    for statement in statements(function):
        for resource in as_list(statement["Resource"]):
            sub = resource.get("Fn::Sub") if isinstance(resource, dict) else None
            text = sub if isinstance(sub, str) else None
            match = re.fullmatch(r"\$\{(\w+)\.Arn\}/index/([\w.-]+)", text or "")
            if not match:
                continue
            table, index = match.groups()
            indexes = {gsi["IndexName"] for gsi in props(table).get("GlobalSecondaryIndexes", [])}
            assert index in indexes, f"{function}: {table} has no index {index} (it has {sorted(indexes)})"


@pytest.mark.parametrize("function", sorted(FUNCTIONS))
def test_names_reach_functions_only_through_refs(function: str) -> None:
    env = {
        **GLOBAL_FUNCTION.get("Environment", {}).get("Variables", {}),
        **(props(function).get("Environment", {}) or {}).get("Variables", {}),
    }
    for name, value in env.items():
        if re.search(r"_(TABLE|BUCKET|SECRET_NAME|SECRET_ARN|QUEUE_URL|TOPIC_ARN)$", name):
            assert isinstance(value, dict) and refs_in(value) <= set(RESOURCES) | set(PARAMETERS), (
                f"{function}: {name} must come from !Ref/!GetAtt of the template, not {value!r}"
            )


# ------------------------------------------------------------------ functions


@pytest.mark.parametrize("function", sorted(FUNCTIONS))
def test_function_runs_python_312_or_newer_on_arm64_with_tracing(function: str) -> None:
    runtime = str(effective(function, "Runtime"))
    match = re.fullmatch(r"python3\.(\d+)", runtime)
    assert match and int(match.group(1)) >= 12, f"{function}: runtime {runtime} (python3.12 or newer)"
    assert effective(function, "Architectures") == ["arm64"], f"{function}: arm64 only"
    assert effective(function, "Tracing") == "Active", f"{function}: X-Ray tracing"


@pytest.mark.parametrize("function", sorted(FUNCTIONS))
def test_function_sets_its_own_timeout_and_memory(function: str) -> None:
    own = props(function)
    assert "Timeout" in own and "MemorySize" in own, f"{function}: Timeout and MemorySize set per function"
    timeout, memory = int(own["Timeout"]), int(own["MemorySize"])
    assert 1 <= timeout <= 900 and 128 <= memory <= 10240
    if events(function, "HttpApi"):
        assert timeout < API_INTEGRATION_TIMEOUT_S, f"{function}: the HTTP API stops waiting after 30 s"
    if events(function, "Cognito"):
        assert timeout <= COGNITO_TRIGGER_TIMEOUT_S, f"{function}: Cognito stops waiting after 5 s"


@pytest.mark.parametrize("function", sorted(FUNCTIONS))
def test_function_logs_have_a_retention(function: str) -> None:
    groups = [
        props(group)
        for group in of_type("AWS::Logs::LogGroup")
        if props(group).get("LogGroupName") == {"Fn::Sub": f"/aws/lambda/${{{function}}}"}
    ]
    assert groups, f"{function}: declare /aws/lambda/${{{function}}} (else Lambda keeps its logs forever)"
    assert 30 <= int(groups[0]["RetentionInDays"]) <= 3653


def test_shared_layer_builds_for_the_functions_runtime_and_architecture() -> None:
    layer = RESOURCES["SharedLayer"]
    assert layer["Properties"]["ContentUri"] == "shared/"
    assert (REPO_ROOT / "shared" / "requirements.txt").is_file()
    # shared/Makefile builds it: arm64 wheels plus bytecode for the functions' Python (SAM's
    # python builder would ship no .pyc, and every cold start would compile the layer).
    assert layer["Metadata"] == {"BuildMethod": "makefile", "BuildArchitecture": "arm64"}
    recipe = (REPO_ROOT / "shared" / "Makefile").read_text(encoding="utf-8")
    assert "build-SharedLayer:" in recipe
    assert "--platform manylinux2014_aarch64" in recipe
    assert "compileall" in recipe
    assert GLOBAL_FUNCTION["Layers"] == [{"Ref": "SharedLayer"}]
    runtimes = {str(effective(f, "Runtime")) for f in FUNCTIONS}
    assert {f"PYTHON ?= {runtime}" for runtime in runtimes} <= set(recipe.splitlines()), "bytecode is per Python"
    assert runtimes <= set(layer["Properties"]["CompatibleRuntimes"])
    assert layer["Properties"]["CompatibleArchitectures"] == ["arm64"]


@pytest.mark.parametrize(
    "function", sorted(f for f in FUNCTIONS if (REPO_ROOT / str(props(f)["CodeUri"]) / "requirements.txt").is_file())
)
def test_a_function_with_its_own_requirements_ships_them_with_bytecode(function: str) -> None:
    # SAM's python builder would ship them without .pyc, and Lambda's /var/task is read-only, so
    # every cold start would compile them (stripe) from source: the layer's recipe builds them.
    metadata = RESOURCES[function].get("Metadata", {})
    assert metadata.get("BuildMethod") == "makefile" and metadata.get("ContextPath") == "shared/"
    code = REPO_ROOT / str(props(function)["CodeUri"])
    recipe = REPO_ROOT / "shared" / "Makefile"
    build = ["make", "--dry-run", "--makefile", str(recipe), f"build-{function}", "ARTIFACTS_DIR=/artifacts"]
    dry_run = subprocess.run(
        [*build, "PYTHON=python3.12"],
        cwd=code,
        capture_output=True,
        text=True,
        check=True,
    )
    commands = [shlex.split(line) for line in dry_run.stdout.splitlines() if line.startswith("python3.12 ")]
    pip = next(c for c in commands if c[1:4] == ["-m", "pip", "install"])
    assert {"--no-compile", "--platform", "manylinux2014_aarch64", "--target", "/artifacts"} <= set(pip)
    assert pip[pip.index("--python-version") + 1] == str(effective(function, "Runtime")).removeprefix("python")
    assert pip[-2:] == ["-r", "requirements.txt"]
    compile_all = next(c for c in commands if c[1:3] == ["-m", "compileall"])
    assert compile_all[compile_all.index("--invalidation-mode") + 1] == "unchecked-hash"
    assert compile_all[compile_all.index("-p") + 1] == "/var/task" and compile_all[-2:] == ["/artifacts", ">/dev/null"]
    assert "cp *.py /artifacts/" in dry_run.stdout.replace('"', "")


@pytest.mark.parametrize("function", sorted(FUNCTIONS))
def test_reserved_concurrency_is_switchable_and_bounded_or_its_absence_explained(function: str) -> None:
    reserved = props(function).get("ReservedConcurrentExecutions")
    if reserved is None:
        assert "CKV_AWS_115" in checkov_skips(function), (
            f"{function}: reserve concurrency (see docs/deploy.md) or skip CKV_AWS_115 with the reason"
        )
        return
    assert reserved["Fn::If"][0] == "ReserveConcurrency" and reserved["Fn::If"][2] == {"Ref": "AWS::NoValue"}
    assert 1 <= int(reserved["Fn::If"][1]) <= 50


@pytest.mark.parametrize("function", functions_with_event(*ASYNC_EVENT_TYPES))
def test_asynchronously_invoked_function_sends_its_failures_to_a_queue(function: str) -> None:
    # API and Cognito invoke synchronously: their caller sees the failure, a DLQ would get nothing.
    own = props(function)
    destination = (own.get("EventInvokeConfig", {}) or {}).get("DestinationConfig", {}).get("OnFailure", {})
    targets = refs_in(own.get("DeadLetterQueue", {})) | refs_in(destination)
    assert targets, f"{function}: failed asynchronous invocations must land in a queue"
    assert targets <= set(QUEUES), f"{function}: failure destination {targets} is not an SQS queue of the template"


@pytest.mark.parametrize("resource", SCHEDULED)
def test_schedule_retries_and_keeps_events_it_cannot_deliver(resource: str) -> None:
    for name, event in events(resource, *SCHEDULE_EVENT_TYPES).items():
        p = event["Properties"]
        assert refs_in(p.get("DeadLetterConfig", {})) & set(QUEUES), f"{resource}.{name}: a DLQ for undelivered events"
        assert p.get("RetryPolicy", {}).get("MaximumRetryAttempts") is not None, f"{resource}.{name}: a retry policy"


@pytest.mark.parametrize("queue", sorted(QUEUES))
def test_queue_is_encrypted_and_alarmed(queue: str) -> None:
    p = props(queue)
    assert p.get("SqsManagedSseEnabled") is True or "KmsMasterKeyId" in p, f"{queue}: encrypted at rest"
    if "RedrivePolicy" in p:  # a work queue: its messages are work, but work waiting long is stuck
        alarms = [a for a, m in watched("AWS/SQS", "ApproximateAgeOfOldestMessage") if queue in dimension_refs(m)]
        assert alarms, f"{queue}: work waiting too long must raise an alarm"
        return
    alarms = [a for a, m in watched("AWS/SQS", "ApproximateNumberOfMessagesVisible") if queue in dimension_refs(m)]
    assert alarms, f"{queue}: a message here is a failed run; an alarm must say so"


# ------------------------------------------------------------------ data


@pytest.mark.parametrize("table", sorted(TABLES))
def test_table_is_on_demand_recoverable_protected_encrypted_and_retained(table: str) -> None:
    p = props(table)
    assert p["BillingMode"] == "PAY_PER_REQUEST"
    assert p["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert p["DeletionProtectionEnabled"] is True
    assert p["SSESpecification"]["SSEEnabled"] is True
    assert RESOURCES[table]["DeletionPolicy"] == "Retain"
    assert RESOURCES[table]["UpdateReplacePolicy"] == "Retain"


def test_idempotency_records_expire_by_the_attribute_the_code_writes() -> None:
    ttl = props("IdempotencyTable")["TimeToLiveSpecification"]
    assert ttl["Enabled"] is True
    adapter = (REPO_ROOT / "shared" / "tokenledger" / "adapters" / "dynamodb.py").read_text(encoding="utf-8")
    assert f'item["{ttl["AttributeName"]}"]' in adapter, "the TTL attribute must be the one the adapter sets"


@pytest.mark.parametrize("bucket", sorted(BUCKETS))
def test_bucket_is_encrypted_private_versioned_with_lifecycle_and_retained(bucket: str) -> None:
    p = props(bucket)
    rules = p["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rules and all(r["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in {"AES256", "aws:kms"} for r in rules)
    block = p["PublicAccessBlockConfiguration"]
    assert all(
        block[k] is True for k in ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets")
    )
    assert p["VersioningConfiguration"]["Status"] == "Enabled"
    lifecycle = [r for r in p["LifecycleConfiguration"]["Rules"] if r.get("Status") == "Enabled"]
    assert lifecycle, f"{bucket}: old reports need a lifecycle rule"
    assert RESOURCES[bucket]["DeletionPolicy"] == "Retain"


@pytest.mark.parametrize("resource", sorted(of_type("AWS::Cognito::UserPool") | of_type("AWS::SecretsManager::Secret")))
def test_identity_and_secrets_survive_a_stack_delete_or_replacement(resource: str) -> None:
    assert RESOURCES[resource]["DeletionPolicy"] == "Retain"
    assert RESOURCES[resource]["UpdateReplacePolicy"] == "Retain"


# ------------------------------------------------------------------ the HTTP API


def test_every_route_is_on_the_one_http_api() -> None:
    routes = http_routes()
    assert routes
    for function, route, p in routes:
        assert p.get("ApiId") == {"Ref": "HttpApi"}, (
            f"{function} {route}: without ApiId SAM builds a second API, with no authorizer, throttling or logs"
        )


def test_every_route_but_the_stripe_webhook_requires_the_cognito_jwt() -> None:
    auth = props("HttpApi")["Auth"]
    default = auth["DefaultAuthorizer"]
    jwt = auth["Authorizers"][default]["JwtConfiguration"]
    assert refs_in(jwt["issuer"]) >= {"UserPool"}
    # Users' tokens (the web app's client), machine clients' access tokens (client credentials);
    # the web console's client joins only when it is deployed (tests/unit/test_console_template.py).
    assert refs_in(jwt["audience"]) - {"ConsoleUserPoolClient", "AWS::NoValue"} == {"UserPoolClient", "MachineClient"}
    seen = set()
    for function, route, p in http_routes():
        seen.add(route)
        authorizer = (p.get("Auth") or {}).get("Authorizer", default)
        if route == STRIPE_WEBHOOK_ROUTE:
            assert authorizer == "NONE", "Stripe cannot send a JWT: the webhook verifies Stripe-Signature instead"
        else:
            assert authorizer == default, f"{function} {route} must require the Cognito JWT"
    # the local stack routes by the same rules
    assert {r.route_key for r in Stack().routes() if not r.authorized} <= {STRIPE_WEBHOOK_ROUTE}
    assert len(seen) == len(http_routes()), "a route is declared twice"


def test_http_api_is_throttled_and_logs_every_request() -> None:
    p = props("HttpApi")
    throttle = p["DefaultRouteSettings"]
    assert 0 < throttle["ThrottlingRateLimit"] <= throttle["ThrottlingBurstLimit"]
    logs = p["AccessLogSettings"]
    (group,) = refs_in(logs["DestinationArn"])
    assert RESOURCES[group]["Type"] == "AWS::Logs::LogGroup"
    assert int(props(group)["RetentionInDays"]) >= 30
    for field in ("$context.requestId", "$context.routeKey", "$context.status"):
        assert field in logs["Format"]


# ------------------------------------------------------------------ alarms and parameters


def test_alarms_notify_the_alarm_topic() -> None:
    topic = {"Fn::If": ["CreateAlarmTopic", {"Ref": "AlarmTopic"}, {"Ref": "AlarmTopicArn"}]}
    assert PARAMETERS["AlarmTopicArn"]["Type"] == "String"
    assert ALARMS
    for alarm in ALARMS:
        assert props(alarm)["AlarmActions"] == [topic], f"{alarm} must notify the alarm topic"


def test_every_table_is_in_a_throttle_alarm() -> None:
    for metric in ("ReadThrottleEvents", "WriteThrottleEvents"):
        covered = set().union(*(dimension_refs(m) for _, m in watched("AWS/DynamoDB", metric)))
        assert set(TABLES) <= covered, f"{metric} not alarmed for {sorted(set(TABLES) - covered)}"


def test_every_function_is_in_a_throttle_alarm() -> None:
    covered = set().union(*(dimension_refs(m) for _, m in watched("AWS/Lambda", "Throttles")))
    assert set(FUNCTIONS) <= covered, f"Throttles not alarmed for {sorted(set(FUNCTIONS) - covered)}"


def test_api_5xx_rate_is_alarmed() -> None:
    alarms = [a for a, m in watched("AWS/ApiGateway", "5xx") if "HttpApi" in dimension_refs(m)]
    assert alarms
    for alarm in alarms:
        expressions = [q["Expression"] for q in props(alarm)["Metrics"] if "Expression" in q]
        assert any("/" in e for e in expressions), f"{alarm}: alarm on the rate, not the count"


def test_stripe_signature_failures_are_counted_and_alarmed() -> None:
    assert watched("tokenledger", "StripeSignatureFailures")
    filters = of_type("AWS::Logs::MetricFilter").values()
    produced = {t["MetricName"] for f in filters for t in f["Properties"]["MetricTransformations"]}
    assert "StripeSignatureFailures" in produced
    (pattern,) = [
        f["Properties"]["FilterPattern"] for f in filters if "webhooks/stripe" in f["Properties"]["FilterPattern"]
    ]
    assert STRIPE_WEBHOOK_ROUTE in pattern and '"400"' in pattern


@pytest.mark.parametrize("resource", sorted(set(functions_with_event("Cognito", *ASYNC_EVENT_TYPES)) | set(SCHEDULED)))
def test_scheduled_and_trigger_failures_are_alarmed(resource: str) -> None:
    metric = ("AWS/States", "ExecutionsFailed") if resource in STATE_MACHINES else ("AWS/Lambda", "Errors")
    assert any(resource in dimension_refs(m) for _, m in watched(*metric)), f"{resource}: an alarm on {metric[1]}"


@pytest.mark.parametrize("function", functions_with_event("Schedule", "ScheduleV2"))
def test_reconciliation_findings_are_alarmed_and_the_schedule_is_a_parameter(function: str) -> None:
    (schedule,) = events(function, "Schedule", "ScheduleV2").values()
    expression = schedule["Properties"].get("Schedule", schedule["Properties"].get("ScheduleExpression"))
    assert refs_in(expression) & set(PARAMETERS), f"{function}: the schedule comes from a parameter"
    findings = [
        (alarm, m)
        for alarm in ALARMS
        for m in alarm_metrics(alarm)
        if m["Namespace"] == "tokenledger" and "Finding" in m["MetricName"]
    ]
    assert findings, "an alarm on the reconciliation findings metric"
    for alarm, _ in findings:
        assert props(alarm)["ComparisonOperator"] == "GreaterThanThreshold" and props(alarm)["Threshold"] == 0


def test_parameters_for_stage_secret_grant_and_alarm_topic() -> None:
    assert PARAMETERS["Stage"]["AllowedValues"] == ["dev", "prod"]
    assert PARAMETERS["WelcomeGrantTokens"]["Type"] == "Number"
    assert {"AlarmTopicArn", "EnableReservedConcurrency"} <= set(PARAMETERS)
    for secret in of_type("AWS::SecretsManager::Secret"):
        assert refs_in(props(secret).get("Name")) & set(PARAMETERS), f"{secret}: its name comes from a parameter"


# ------------------------------------------------------------------ checker suppressions and deploy config


def checkov_skips(logical_id: str) -> dict[str, str]:
    metadata = RESOURCES[logical_id].get("Metadata", {}) or {}
    return {s["id"]: str(s.get("comment", "")) for s in metadata.get("checkov", {}).get("skip", [])}


@pytest.mark.parametrize("resource", sorted(r for r in RESOURCES if checkov_skips(r)))
def test_every_checkov_skip_says_why(resource: str) -> None:
    for check, comment in checkov_skips(resource).items():
        assert len(comment.split()) >= 5, f"{resource}: skip of {check} needs a reason"


def test_samconfig_deploys_dev_and_prod_with_parameters_the_template_has() -> None:
    config = tomllib.loads(Path(REPO_ROOT / "samconfig.toml").read_text(encoding="utf-8"))
    stacks = set()
    for stage in ("dev", "prod"):
        deploy = config[stage]["deploy"]["parameters"]
        stacks.add(deploy["stack_name"])
        assert "CAPABILITY_IAM" in deploy["capabilities"]
        overrides = dict(pair.split("=", 1) for pair in shlex.split(deploy["parameter_overrides"]))
        assert overrides["Stage"] == stage
        assert set(overrides) <= set(PARAMETERS), f"{stage}: unknown parameters {set(overrides) - set(PARAMETERS)}"
        for name, value in overrides.items():
            spec = PARAMETERS[name]
            assert value in [str(v) for v in spec.get("AllowedValues", [value])], f"{stage}: {name}={value}"
            assert re.fullmatch(spec.get("AllowedPattern", ".*"), value), f"{stage}: {name}={value}"
        assert config[stage]["build"]["parameters"]
    assert len(stacks) == 2, "dev and prod deploy to different stacks"


def test_outputs_name_the_api_and_every_table() -> None:
    outputs = TEMPLATE["Outputs"]
    assert "ApiUrl" in outputs and {"UserPoolId", "UserPoolClientId"} <= set(outputs)
    output_refs = refs_in([o["Value"] for o in outputs.values()])
    assert set(TABLES) <= output_refs, f"no output for {sorted(set(TABLES) - output_refs)}"


def test_machine_clients_get_the_admin_scope_through_a_resource_server_and_client_credentials() -> None:
    server = props("ApiResourceServer")
    assert server["Identifier"] == "tokenledger" and [s["ScopeName"] for s in server["Scopes"]] == ["admin"]
    client = props("MachineClient")
    assert client["AllowedOAuthFlows"] == ["client_credentials"]
    assert client["AllowedOAuthScopes"] == ["tokenledger/admin"] and client["GenerateSecret"] is True
    from tokenledger.http.api import ADMIN_SCOPE

    assert f"{server['Identifier']}/{server['Scopes'][0]['ScopeName']}" == ADMIN_SCOPE


def test_the_stripe_webhook_route_has_its_own_throttle_and_user_functions_reserve_concurrency() -> None:
    route = props("HttpApi")["RouteSettings"][STRIPE_WEBHOOK_ROUTE]
    default = props("HttpApi")["DefaultRouteSettings"]
    assert 0 < route["ThrottlingRateLimit"] <= default["ThrottlingRateLimit"]
    assert 0 < route["ThrottlingBurstLimit"] <= default["ThrottlingBurstLimit"]
    for function in ("ReadsFunction", "WritesFunction", "StripeWebhookFunction"):
        reserved = props(function)["ReservedConcurrentExecutions"]
        assert reserved["Fn::If"][0] == "ReserveConcurrency" and 1 <= int(reserved["Fn::If"][1]) <= 50


def test_table_names_are_the_names_the_tables_are_created_with() -> None:
    stack = Stack()
    definitions = stack.table_definitions()
    names = stack.table_names()
    assert names == {logical_id: d["TableName"] for logical_id, d in definitions.items()}
    assert {"AccountsTable", "EntriesTable", "IdempotencyTable"} <= set(names)
    assert len(set(names.values())) == len(names)  # no two tables share a name
