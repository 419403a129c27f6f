"""The outbound events' JSON Schemas (docs/events/) and the template's schema registry built from them.

    python -m infra.event_schemas          # print the template's AWS::EventSchemas::Schema resources

`docs/events/<name>.json` describes one detail-type's `detail` (JSON Schema draft 4, the
dialect EventBridge's registry takes). The registry holds the whole event: the envelope
below with that detail inside. A test holds template and files together.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from infra.template import REPO_ROOT
from tokenledger.service.events import DETAIL_TYPES
from tokenledger.service.ports import EVENT_SOURCE

SCHEMAS_DIR = REPO_ROOT / "docs" / "events"
DRAFT_4 = "http://json-schema.org/draft-04/schema#"


def schema_file(detail_type: str) -> Path:
    return SCHEMAS_DIR / (detail_type.lower().replace(" ", "-") + ".json")


def detail_schema(detail_type: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(schema_file(detail_type).read_text(encoding="utf-8"))
    return loaded


def logical_id(detail_type: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "", detail_type) + "EventSchema"


def envelope(detail_type: str) -> dict[str, Any]:
    """The whole EventBridge event of one detail-type, as the registry stores it."""
    detail = {k: v for k, v in detail_schema(detail_type).items() if k != "$schema"}
    return {
        "$schema": DRAFT_4,
        "title": detail_type,
        "type": "object",
        "required": ["id", "source", "detail-type", "time", "detail"],
        "properties": {
            "version": {"type": "string"},
            "id": {"type": "string", "description": "EventBridge's own id: differs per delivery, dedupe on the detail"},
            "source": {"type": "string", "enum": [EVENT_SOURCE]},
            "detail-type": {"type": "string", "enum": [detail_type]},
            "time": {"type": "string"},
            "account": {"type": "string"},
            "region": {"type": "string"},
            "resources": {"type": "array", "items": {"type": "string"}},
            "detail": detail,
        },
    }


def registry_yaml() -> str:
    lines = []
    for detail_type in DETAIL_TYPES:
        content = json.dumps(envelope(detail_type), indent=2)
        lines += [
            f"  {logical_id(detail_type)}:",
            "    Type: AWS::EventSchemas::Schema",
            "    Properties:",
            "      RegistryName: !GetAtt EventSchemaRegistry.RegistryName",
            f"      SchemaName: tokenledger@{detail_type.replace(' ', '')}",
            "      Type: JSONSchemaDraft4",
            f"      Description: The `{detail_type}` event (docs/events/{schema_file(detail_type).name}).",
            "      Content: |",
            *("        " + line for line in content.splitlines()),
            "",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(registry_yaml())
