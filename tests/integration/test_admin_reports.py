"""`GET /v1/admin/reports`: past reconciliation runs for the console's trend chart."""

from __future__ import annotations

from typing import Any

import boto3

from infra.api import LocalApi
from infra.template import LOCAL_REGION
from tests.conftest import STACK, Client
from tests.integration.test_reconcile import fund, new_user, reconcile

BUCKET = STACK.environment()["REPORTS_BUCKET"]
SUMMARY_FIELDS = {
    "run_id",
    "started_at",
    "finished_at",
    "accounts_checked",
    "entries_checked",
    "tokens_outstanding",
    "unrecovered_chargebacks",
    "findings",
    "findings_by_kind",
    "healthy",
    "key",
}


def test_no_runs_yet_is_an_empty_list(admin: Client) -> None:
    response = admin.get("/v1/admin/reports")
    assert response.status == 200
    assert response.json == {"reports": []}


def test_past_runs_are_listed_newest_first_with_their_figures(api: LocalApi, admin: Client) -> None:
    first = reconcile(api)
    fund(admin, new_user(), 70)
    second = reconcile(api)

    response = admin.get("/v1/admin/reports", limit=10)

    assert response.status == 200
    reports = response.json["reports"]
    assert [r["run_id"] for r in reports] == [second["run_id"], first["run_id"]]
    assert all(set(r) == SUMMARY_FIELDS for r in reports)
    newest = reports[0]
    assert newest["tokens_outstanding"] == second["tokens_outstanding"] == first["tokens_outstanding"] + 70
    assert newest["entries_checked"] == second["entries_checked"]
    assert newest["findings"] == len(second["inconsistencies"]) and newest["healthy"] == second["healthy"]
    assert "inconsistencies" not in newest, "a summary never carries the findings list"
    assert admin.get("/v1/admin/reports", limit=1).json["reports"] == reports[:1]


def test_snapshots_latest_and_stray_objects_are_not_reports(api: LocalApi, admin: Client) -> None:
    report = reconcile(api)
    s3: Any = boto3.client("s3", region_name=LOCAL_REGION)
    for stray in ("reports/runs/r1/part-0-4.json", "reports/2026/x/01/a.json", "reports/2026/12/01/../b.json"):
        s3.put_object(Bucket=BUCKET, Key=stray, Body=b"{}")

    listed = admin.get("/v1/admin/reports").json["reports"]

    assert [r["key"] for r in listed] == [report["snapshot_key"].removesuffix(".snapshot.jsonl") + ".json"]


def test_a_bad_limit_is_422_and_only_admins_list_reports(api: LocalApi, admin: Client) -> None:
    for limit in ("0", "51", "ten", "1.5"):
        response = admin.get("/v1/admin/reports", limit=limit)
        assert response.status == 422, limit
        assert response.json["code"] == "validation_error"
    for client, status, code in ((Client(api, None), 401, "unauthorized"), (Client(api, "u-1"), 403, "forbidden")):
        response = client.get("/v1/admin/reports", limit="ten")
        assert (response.status, response.json["code"]) == (status, code), "401/403 wins over a bad query"
