"""Read `template.yaml`, the single source of truth, for tests and the local stack.

Tables, buckets, functions, routes and environment all come from the template; nothing
here repeats a schema. CloudFormation intrinsics (`!Ref`, `!GetAtt`, `!Sub`) are resolved
to local names: a resource's physical name is `<stack>-<LogicalId>`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_PATH = REPO_ROOT / "template.yaml"
LOCAL_STACK_NAME = "tokenledger-local"
LOCAL_REGION = "us-east-1"
LOCAL_ACCOUNT_ID = "123456789012"

_INTRINSICS = (
    "Ref",
    "Condition",
    "GetAtt",
    "Sub",
    "Join",
    "If",
    "Equals",
    "Not",
    "And",
    "Or",
    "Select",
    "Split",
    "FindInMap",
    "ImportValue",
    "Base64",
    "GetAZs",
    "Cidr",
    "Transform",
)


class _CfnLoader(yaml.SafeLoader):
    """A YAML loader that understands CloudFormation's short-form tags."""


def _make_constructor(tag: str) -> Any:
    full = tag if tag in ("Ref", "Condition") else f"Fn::{tag}"

    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
        value: Any
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
            if tag == "GetAtt":
                value = str(value).split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
        return {full: value}

    return construct


for _tag in _INTRINSICS:
    _CfnLoader.add_constructor(f"!{_tag}", _make_constructor(_tag))


@cache
def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        loaded: dict[str, Any] = yaml.load(handle, Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass
    return loaded


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # as in the template: /v1/transactions/{entry_id}
    function: str  # logical id
    authorized: bool

    @property
    def route_key(self) -> str:
        return f"{self.method} {self.path}"

    def match(self, method: str, path: str) -> dict[str, str] | None:
        if method.upper() != self.method:
            return None
        pattern = "^" + re.sub(r"\\{([A-Za-z0-9_]+)\\}", r"(?P<\1>[^/]+)", re.escape(self.path)) + "$"
        found = re.match(pattern, path)
        return found.groupdict() if found else None


@dataclass(frozen=True)
class FunctionSpec:
    logical_id: str
    code_dir: Path
    handler: str  # module.function
    environment: dict[str, str]
    timeout_s: int
    events: dict[str, Any] = field(default_factory=dict)

    @property
    def handler_file(self) -> Path:
        return self.code_dir / (self.handler.rsplit(".", 1)[0].replace(".", "/") + ".py")

    @property
    def handler_function(self) -> str:
        return self.handler.rsplit(".", 1)[1]


class Stack:
    """The template's resources with local physical names."""

    def __init__(
        self,
        template: dict[str, Any] | None = None,
        *,
        stack_name: str = LOCAL_STACK_NAME,
        parameters: dict[str, str] | None = None,
    ) -> None:
        self.template = template if template is not None else load_template()
        self.stack_name = stack_name
        self.resources: dict[str, Any] = self.template.get("Resources", {})
        self.parameters = {
            name: str(spec.get("Default", "")) for name, spec in self.template.get("Parameters", {}).items()
        }
        self.parameters.update(parameters or {})

    # ------------------------------------------------------------ names and intrinsics
    def physical_name(self, logical_id: str) -> str:
        resource = self.resources[logical_id]
        props = resource.get("Properties", {}) or {}
        explicit = props.get("TableName") or props.get("BucketName") or props.get("Name")
        if explicit is not None:
            return str(self.resolve(explicit))
        if resource["Type"] == "AWS::S3::Bucket":
            return f"{self.stack_name}-{logical_id}".lower()
        return f"{self.stack_name}-{logical_id}"

    def arn(self, logical_id: str) -> str:
        kind = self.resources[logical_id]["Type"]
        name = self.physical_name(logical_id)
        if kind == "AWS::DynamoDB::Table":
            return f"arn:aws:dynamodb:{LOCAL_REGION}:{LOCAL_ACCOUNT_ID}:table/{name}"
        if kind == "AWS::S3::Bucket":
            return f"arn:aws:s3:::{name}"
        if kind == "AWS::SecretsManager::Secret":
            return f"arn:aws:secretsmanager:{LOCAL_REGION}:{LOCAL_ACCOUNT_ID}:secret:{name}"
        if kind == "AWS::SQS::Queue":
            return f"arn:aws:sqs:{LOCAL_REGION}:{LOCAL_ACCOUNT_ID}:{name}"
        return f"arn:aws:local:{LOCAL_REGION}:{LOCAL_ACCOUNT_ID}:{logical_id}"

    def _pseudo(self, name: str) -> str | None:
        return {
            "AWS::Region": LOCAL_REGION,
            "AWS::AccountId": LOCAL_ACCOUNT_ID,
            "AWS::StackName": self.stack_name,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
        }.get(name)

    def _ref(self, name: str) -> str:
        if name in self.parameters:
            return self.parameters[name]
        pseudo = self._pseudo(name)
        if pseudo is not None:
            return pseudo
        kind = self.resources[name]["Type"]
        if kind == "AWS::SecretsManager::Secret":
            return self.arn(name)
        if kind == "AWS::SQS::Queue":
            return self.queue_url(name)
        return self.physical_name(name)

    def queue_url(self, logical_id: str) -> str:
        """`!Ref` of a queue: its URL, in the form moto's SQS answers."""
        return f"https://sqs.{LOCAL_REGION}.amazonaws.com/{LOCAL_ACCOUNT_ID}/{self.physical_name(logical_id)}"

    def resolve(self, value: Any) -> Any:
        """Resolve the intrinsics this project uses to local values."""
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            intrinsic = self._intrinsics().get(key)
            if intrinsic is not None:
                return intrinsic(arg)
        return {k: self.resolve(v) for k, v in value.items()}

    def _intrinsics(self) -> dict[str, Callable[[Any], Any]]:
        """The intrinsic functions this project uses, by name."""
        return {
            "Ref": lambda arg: self._ref(str(arg)),
            "Fn::GetAtt": self._get_att,
            "Fn::Sub": self._sub,
            "Fn::Join": lambda arg: str(arg[0]).join(str(self.resolve(p)) for p in arg[1]),
        }

    def _get_att(self, arg: Any) -> str:
        logical, attribute = arg if isinstance(arg, list) else str(arg).split(".", 1)
        return self.arn(logical) if attribute == "Arn" else self.physical_name(logical)

    def _sub(self, arg: Any) -> str:
        text, extra = (arg, {}) if isinstance(arg, str) else (arg[0], self.resolve(arg[1]))
        return re.sub(r"\$\{([^}]+)\}", lambda m: self._sub_var(m.group(1), extra), text)

    def _sub_var(self, name: str, extra: dict[str, Any]) -> str:
        if name in extra:
            return str(extra[name])
        if "." in name:
            return str(self.resolve({"Fn::GetAtt": name.split(".", 1)}))
        return str(self._ref(name))

    # ------------------------------------------------------------ resources by kind
    def of_type(self, kind: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.resources.items() if v.get("Type") == kind}

    def table_names(self) -> dict[str, str]:
        """Every table's name by its logical id."""
        return {logical_id: self.physical_name(logical_id) for logical_id in self.of_type("AWS::DynamoDB::Table")}

    def table_definitions(self) -> dict[str, dict[str, Any]]:
        """`CreateTable` arguments for every table, straight from the template's properties."""
        tables = {}
        for logical_id, resource in self.of_type("AWS::DynamoDB::Table").items():
            props = self.resolve(resource.get("Properties", {}))
            definition: dict[str, Any] = {
                "TableName": self.physical_name(logical_id),
                "AttributeDefinitions": props["AttributeDefinitions"],
                "KeySchema": props["KeySchema"],
                "BillingMode": props.get("BillingMode", "PAY_PER_REQUEST"),
            }
            if props.get("GlobalSecondaryIndexes"):
                definition["GlobalSecondaryIndexes"] = [
                    {k: gsi[k] for k in ("IndexName", "KeySchema", "Projection")}
                    for gsi in props["GlobalSecondaryIndexes"]
                ]
            stream = props.get("StreamSpecification")
            if stream:
                definition["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": stream["StreamViewType"]}
            tables[logical_id] = definition
        return tables

    def table_ttl(self, logical_id: str) -> str | None:
        spec = self.resources[logical_id].get("Properties", {}).get("TimeToLiveSpecification")
        return str(spec["AttributeName"]) if spec and spec.get("Enabled") else None

    def functions(self) -> dict[str, FunctionSpec]:
        globals_fn = self.template.get("Globals", {}).get("Function", {})
        global_env = globals_fn.get("Environment", {}).get("Variables", {})
        specs = {}
        for logical_id, resource in self.of_type("AWS::Serverless::Function").items():
            props = resource.get("Properties", {})
            env_raw = {**global_env, **props.get("Environment", {}).get("Variables", {})}
            specs[logical_id] = FunctionSpec(
                logical_id=logical_id,
                code_dir=REPO_ROOT / str(props["CodeUri"]),
                handler=str(props["Handler"]),
                environment={k: str(self.resolve(v)) for k, v in env_raw.items()},
                timeout_s=int(props.get("Timeout", globals_fn.get("Timeout", 3))),
                events=props.get("Events", {}) or {},
            )
        return specs

    def routes(self) -> list[Route]:
        api_auth = {
            logical_id: (resource.get("Properties", {}).get("Auth") or {}).get("DefaultAuthorizer")
            for logical_id, resource in self.of_type("AWS::Serverless::HttpApi").items()
        }
        routes = []
        for spec, _name, props in self.function_events("HttpApi"):
            api = props.get("ApiId", {}).get("Ref") if isinstance(props.get("ApiId"), dict) else None
            auth = (props.get("Auth") or {}).get("Authorizer", api_auth.get(api or ""))
            routes.append(
                Route(
                    method=str(props["Method"]).upper(),
                    path=str(props["Path"]),
                    function=spec.logical_id,
                    authorized=auth not in (None, "NONE"),
                )
            )
        return routes

    def function_events(self, event_type: str) -> list[tuple[FunctionSpec, str, dict[str, Any]]]:
        """Every function event of `event_type` (HttpApi, SQS, DynamoDB, ...): (function, event name, Properties)."""
        return [
            (spec, name, event.get("Properties", {}))
            for spec in self.functions().values()
            for name, event in spec.events.items()
            if event.get("Type") == event_type
        ]

    def environment(self) -> dict[str, str]:
        """Every function's environment merged (they agree on shared names)."""
        merged: dict[str, str] = {}
        for spec in self.functions().values():
            merged.update(spec.environment)
        return merged
