#!/usr/bin/env bash
# One way to deploy: `make deploy` (STAGE=dev, the default, or prod). docs/deploy.md.
#
# SAM CLI lives in its own virtualenv outside the repo (the version infra/check_template.sh
# pins, the same venv), because it pins older boto3/pydantic than the project. `sam build`
# runs pip with the layer's runtime, python3.12, found on PATH or under pyenv; the local
# .venv (3.11+) is not used. Credentials and region: the usual AWS profile or environment.
#
#   STAGE                   dev | prod (samconfig.toml's config environments)
#   TOKENLEDGER_TOOLS_DIR   where the venvs live (default: ~/.cache/tokenledger-tools)
#   TOOLS_PYTHON            the Python that creates the venv (default: python3)
set -euo pipefail
cd "$(dirname "$0")/.."

STAGE=${1:-${STAGE:-dev}}
SAM_CLI_VERSION=$(sed -n 's/^SAM_CLI_VERSION=//p' infra/check_template.sh)
TOOLS_DIR=${TOKENLEDGER_TOOLS_DIR:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/tokenledger-tools}
TOOLS_PYTHON=${TOOLS_PYTHON:-python3}
VENV="$TOOLS_DIR/aws-sam-cli-$SAM_CLI_VERSION"
export SAM_CLI_TELEMETRY=0
# boto3 (SAM's) reads AWS_DEFAULT_REGION; the AWS CLI v2 and the Lambda runtime say AWS_REGION.
if [[ -n "${AWS_REGION:-}" && -z "${AWS_DEFAULT_REGION:-}" ]]; then export AWS_DEFAULT_REGION=$AWS_REGION; fi

die() { echo "error: $*" >&2; exit 2; }

case "$STAGE" in dev | prod) ;; *) die "STAGE must be dev or prod (samconfig.toml), not '$STAGE'" ;; esac

if [[ ! -f "$VENV/.installed" ]]; then
    echo "-- installing aws-sam-cli==$SAM_CLI_VERSION into $VENV (once)"
    rm -rf "$VENV"
    "$TOOLS_PYTHON" -m venv "$VENV"
    PYTHONWARNINGS=ignore "$VENV/bin/pip" install --quiet "aws-sam-cli==$SAM_CLI_VERSION"
    touch "$VENV/.installed"
fi
SAM="$VENV/bin/sam"

PY312_DIR=""
if command -v python3.12 >/dev/null 2>&1; then
    PY312_DIR=$(dirname "$(command -v python3.12)")
else
    for candidate in "$(pyenv root 2>/dev/null)"/versions/3.12*/bin /usr/local/bin /usr/bin; do
        if [[ -x "$candidate/python3.12" ]]; then PY312_DIR=$candidate; break; fi
    done
fi
[[ -n "$PY312_DIR" ]] || die "sam build needs python3.12 (the functions' runtime) on PATH or under pyenv: pyenv install 3.12"

# Fail before building if there are no credentials (SAM's boto3 finds them as the AWS CLI would).
if ! IDENTITY=$("$VENV/bin/python" -c 'import boto3; print(boto3.client("sts").get_caller_identity()["Arn"])' 2>/dev/null); then
    die "no AWS credentials: set AWS_PROFILE (aws configure sso / aws sso login) or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, and AWS_REGION"
fi
STACK=$(sed -n "/^\[$STAGE.deploy.parameters\]/,/^\[/s/^stack_name = \"\(.*\)\"/\1/p" samconfig.toml)
echo "-- deploying $STACK (stage $STAGE) as $IDENTITY"

PATH="$PY312_DIR:$PATH" "$SAM" build --config-env "$STAGE"
"$SAM" deploy --config-env "$STAGE"

output() {
    "$VENV/bin/python" - "$STACK" "$1" <<'PY'
import sys

import boto3

outputs = boto3.client("cloudformation").describe_stacks(StackName=sys.argv[1])["Stacks"][0].get("Outputs", [])
print(next((o["OutputValue"] for o in outputs if o["OutputKey"] == sys.argv[2]), ""))
PY
}
API_URL=$(output ApiUrl)
cat <<TEXT

Deployed $STACK.
  export TOKENLEDGER_URL=$API_URL
  Stripe webhook endpoint: $API_URL/v1/webhooks/stripe
  Cognito user pool: $(output UserPoolId), app client: $(output UserPoolClientId)
First deploy? Put the Stripe secrets, register the webhook endpoint, create an admin and get a
token: docs/deploy.md, "After the first deploy".
TEXT
