#!/usr/bin/env bash
# Check template.yaml with the tools a team would run before deploying it:
#   cfn-lint (errors, warnings and informational findings all fail; suppressions live in the
#   template's Metadata with a reason), checkov (failed checks fail; skips live in the
#   template's Metadata with a reason), `sam validate --lint` and `sam build` (the layer's
#   arm64 wheels included, and the Stripe functions' bytecode; no Docker).
#
# Each tool lives in its own virtualenv outside the repo tree, because aws-sam-cli and
# checkov pin older boto3/pydantic than the project does. The versions are pinned here; a
# venv is built once per version and reused (delete the folder to rebuild).
#
#   TOKENLEDGER_TOOLS_DIR   where the venvs live (default: ~/.cache/tokenledger-tools)
#   TOOLS_PYTHON            the Python that creates them (default: python3)
#   SAM_BUILD_DIR           where `sam build` writes (default: .aws-sam/check, gitignored)
set -euo pipefail
cd "$(dirname "$0")/.."

CFN_LINT_VERSION=1.58.0
CHECKOV_VERSION=3.3.30
SAM_CLI_VERSION=1.170.0

TOOLS_DIR=${TOKENLEDGER_TOOLS_DIR:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/tokenledger-tools}
TOOLS_PYTHON=${TOOLS_PYTHON:-python3}
SAM_BUILD_DIR=${SAM_BUILD_DIR:-.aws-sam/check}
TEMPLATE=template.yaml

export SAM_CLI_TELEMETRY=0
export AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-us-east-1}

# tool_venv NAME VERSION: prints the venv's bin folder, installing NAME==VERSION on first use.
tool_venv() {
    local venv="$TOOLS_DIR/$1-$2"
    if [[ ! -f "$venv/.installed" ]]; then
        echo "-- installing $1==$2 into $venv" >&2
        rm -rf "$venv"
        "$TOOLS_PYTHON" -m venv "$venv"
        "$venv/bin/pip" install --quiet "$1==$2" >&2
        touch "$venv/.installed"
    fi
    echo "$venv/bin"
}

# `sam build` runs shared/Makefile, which installs and compiles the layer and the Stripe
# functions with python3.12: find one.
find_python312() {
    if command -v python3.12 >/dev/null 2>&1 && python3.12 -c "" >/dev/null 2>&1; then
        dirname "$(command -v python3.12)"
        return
    fi
    local candidate
    for candidate in "$(pyenv root 2>/dev/null)"/versions/3.12*/bin /usr/local/bin /usr/bin; do
        if [[ -x "$candidate/python3.12" ]]; then
            echo "$candidate"
            return
        fi
    done
    return 1
}

echo "== cfn-lint $CFN_LINT_VERSION"
CFN_LINT_BIN=$(tool_venv cfn-lint "$CFN_LINT_VERSION")
# --include-checks I (as in .cfnlintrc): informational findings (e.g. a stateful resource
# without an explicit DeletionPolicy) fail too. Exit code is non-zero on any finding.
"$CFN_LINT_BIN/cfn-lint" --include-checks I -- "$TEMPLATE"
echo "cfn-lint: no errors, warnings or informational findings"

echo "== checkov $CHECKOV_VERSION"
CHECKOV_BIN=$(tool_venv checkov "$CHECKOV_VERSION")
# One run, read as JSON: prints the counts, every failed check, and every skip with the reason
# given in the template's Metadata; fails on any failed check (or if checkov cannot run).
CHECKOV_JSON=$(mktemp)
trap 'rm -f "$CHECKOV_JSON"' EXIT
"$CHECKOV_BIN/checkov" --file "$TEMPLATE" --framework cloudformation --skip-download \
    --output json >"$CHECKOV_JSON" || true
"$CHECKOV_BIN/python" - "$CHECKOV_JSON" <<'PY'
import json
import sys

with open(sys.argv[1], encoding="utf-8") as handle:
    report = json.load(handle)
summary, results = report["summary"], report["results"]
for check in results["failed_checks"]:
    print(f"  FAILED {check['check_id']} {check['check_name']} on {check['resource']}")
for check in results["skipped_checks"]:
    reason = " ".join(str(check.get("check_result", {}).get("suppress_comment", "")).split())
    print(f"  skipped {check['check_id']} on {check['resource']}: {reason}")
print(f"checkov: {summary['passed']} passed, {summary['failed']} failed, {summary['skipped']} skipped")
if summary["parsing_errors"] or summary["failed"]:
    sys.exit(1)
PY

echo "== aws-sam-cli $SAM_CLI_VERSION"
SAM_BIN=$(tool_venv aws-sam-cli "$SAM_CLI_VERSION")
"$SAM_BIN/sam" validate --lint --template-file "$TEMPLATE"
if ! PY312_DIR=$(find_python312); then
    echo "sam build needs python3.12 (the layer's BuildMethod) on PATH or under pyenv" >&2
    exit 1
fi
# No Docker: pip (inside sam build) fetches manylinux aarch64 wheels for the arm64 layer.
PATH="$PY312_DIR:$PATH" "$SAM_BIN/sam" build --template-file "$TEMPLATE" \
    --build-dir "$SAM_BUILD_DIR/build" --cache-dir "$SAM_BUILD_DIR/cache"
# The layer must carry an arm64 pydantic-core, or every function fails at import on Lambda.
if ! find "$SAM_BUILD_DIR/build/SharedLayer/python/pydantic_core" -name "_pydantic_core*aarch64*.so" | grep -q .; then
    echo "sam build: SharedLayer has no aarch64 build of pydantic-core" >&2
    exit 1
fi
# The Stripe functions' own package (shared/Makefile) must carry stripe compiled for python3.12,
# or each cold start compiles it from source (/var/task is read-only).
for function in CheckoutFunction StripeWebhookFunction; do
    if [[ ! -f "$SAM_BUILD_DIR/build/$function/stripe/__pycache__/__init__.cpython-312.pyc" ]]; then
        echo "sam build: $function ships no python3.12 bytecode for stripe" >&2
        exit 1
    fi
done
echo "sam: template valid, build succeeded (SharedLayer with aarch64 wheels; Stripe functions with bytecode)"
