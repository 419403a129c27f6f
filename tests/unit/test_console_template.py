"""The web console in template.yaml (EnableConsole) and the files `python -m infra.console build` makes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from infra import console
from infra.npm import find_pinned
from infra.template import load_template

TEMPLATE = load_template()
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]
# UserPoolDomain is not among them: machine clients get their tokens from it, console or not.
CONSOLE_RESOURCES = {
    "ConsoleUserPoolClient",
    "ConsoleBucket",
    "ConsoleBucketPolicy",
    "ConsoleOriginAccessControl",
    "ConsoleHeadersPolicy",
    "ConsoleDistribution",
}


def props(logical_id: str) -> dict[str, Any]:
    found: dict[str, Any] = RESOURCES[logical_id]["Properties"]
    return found


def test_the_console_is_off_unless_asked_for_and_all_of_it_hangs_on_that_one_condition() -> None:
    parameter = TEMPLATE["Parameters"]["EnableConsole"]
    assert parameter["Default"] == "false" and set(parameter["AllowedValues"]) == {"true", "false"}
    assert TEMPLATE["Conditions"]["ConsoleEnabled"] == {"Fn::Equals": [{"Ref": "EnableConsole"}, "true"]}
    for logical_id in CONSOLE_RESOURCES:
        assert RESOURCES[logical_id].get("Condition") == "ConsoleEnabled", logical_id
    outputs = {k: v for k, v in TEMPLATE["Outputs"].items() if k.startswith("Console")}
    assert outputs and all(v.get("Condition") == "ConsoleEnabled" for v in outputs.values())


def test_sign_in_is_the_hosted_ui_code_flow_for_a_public_client() -> None:
    client = props("ConsoleUserPoolClient")
    assert client["GenerateSecret"] is False, "a browser cannot keep a secret: PKCE instead"
    assert client["AllowedOAuthFlows"] == ["code"], "no implicit flow: tokens never travel in a URL"
    assert client["AllowedOAuthFlowsUserPoolClient"] is True
    assert set(client["AllowedOAuthScopes"]) == {"openid", "email"}
    assert all("ConsoleDistribution.DomainName" in url["Fn::Sub"] for url in client["CallbackURLs"])
    assert props("UserPoolDomain")["UserPoolId"] == {"Ref": "UserPool"}
    audience = props("HttpApi")["Auth"]["Authorizers"]["CognitoAuthorizer"]["JwtConfiguration"]["audience"]
    assert {"Fn::If": ["ConsoleEnabled", {"Ref": "ConsoleUserPoolClient"}, {"Ref": "AWS::NoValue"}]} in audience


def test_the_bucket_is_private_and_read_only_by_this_distribution_through_oac() -> None:
    bucket = props("ConsoleBucket")
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    oac = props("ConsoleOriginAccessControl")["OriginAccessControlConfig"]
    assert (oac["OriginAccessControlOriginType"], oac["SigningBehavior"], oac["SigningProtocol"]) == (
        "s3",
        "always",
        "sigv4",
    )
    (origin,) = props("ConsoleDistribution")["DistributionConfig"]["Origins"]
    assert origin["OriginAccessControlId"] == {"Fn::GetAtt": ["ConsoleOriginAccessControl", "Id"]}
    assert origin["S3OriginConfig"] == {"OriginAccessIdentity": ""}, "OAC, not the legacy origin access identity"
    allow, deny = props("ConsoleBucketPolicy")["PolicyDocument"]["Statement"]
    assert allow["Principal"] == {"Service": "cloudfront.amazonaws.com"} and allow["Action"] == "s3:GetObject"
    assert "distribution/${ConsoleDistribution}" in allow["Condition"]["StringEquals"]["AWS:SourceArn"]["Fn::Sub"]
    assert deny["Effect"] == "Deny" and deny["Condition"]["Bool"]["aws:SecureTransport"] == "false"


def test_https_only_strict_headers_and_cors_for_the_console_origin_only() -> None:
    config = props("ConsoleDistribution")["DistributionConfig"]
    assert config["DefaultCacheBehavior"]["ViewerProtocolPolicy"] == "redirect-to-https"
    assert config["DefaultRootObject"] == "console/index.html"
    headers = props("ConsoleHeadersPolicy")["ResponseHeadersPolicyConfig"]["SecurityHeadersConfig"]
    csp = headers["ContentSecurityPolicy"]["ContentSecurityPolicy"]["Fn::Sub"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe" not in csp
    assert headers["StrictTransportSecurity"]["AccessControlMaxAgeSec"] >= 31536000
    cors = props("HttpApi")["CorsConfiguration"]["Fn::If"]
    assert cors[0] == "ConsoleEnabled" and cors[2] == {"Ref": "AWS::NoValue"}
    assert cors[1]["AllowOrigins"] == [{"Fn::Sub": "https://${ConsoleDistribution.DomainName}"}]
    assert "idempotency-key" in cors[1]["AllowHeaders"] and "authorization" in cors[1]["AllowHeaders"]


def test_the_built_site_carries_the_files_the_chart_library_and_a_cognito_config(tmp_path: Path) -> None:
    if find_pinned(console.UPLOT) is None:
        pytest.skip("uPlot is not in the cache (python -m infra.console fetch)")
    config = console.production_config(
        api_base="https://abc.execute-api.eu-west-1.amazonaws.com/prod/",
        console_url="https://d1.cloudfront.net/console/index.html",
        client_id="client123",
        auth_domain="https://tokenledger-prod-1.auth.eu-west-1.amazoncognito.com",
        low_balance_tokens=50,
    )
    written = {p.relative_to(tmp_path).as_posix() for p in console.build_site(tmp_path, config)}
    assert {
        "index.html",
        "console.css",
        "js/app.js",
        "js/auth.js",
        "vendor/uPlot.iife.min.js",
        "config.json",
    } <= written
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["mode"] == "cognito" and saved["api_base"] == "https://abc.execute-api.eu-west-1.amazonaws.com/prod"
    assert saved["cognito"]["redirect_uri"] == "https://d1.cloudfront.net/console/index.html"
    assert saved["dev_reconcile"] is False, "the local-only helpers are never offered in AWS"


@pytest.mark.parametrize("field", ["api_base", "console_url", "auth_domain"])
def test_a_production_config_refuses_plain_http(field: str) -> None:
    values = {
        "api_base": "https://a.example",
        "console_url": "https://b.example/console/index.html",
        "auth_domain": "https://c.example",
    }
    values[field] = "http://insecure.example"
    with pytest.raises(ValueError, match=field):
        console.production_config(**values, client_id="c", low_balance_tokens=1)
