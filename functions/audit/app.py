"""Admin audit: one account's audit, repair and statement, the latest reconciliation report and past runs."""

from __future__ import annotations

import tokenledger.coldstart  # isort: skip - first: it trims what the imports below load

from typing import Annotated, Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from tokenledger import bootstrap
from tokenledger.domain.errors import NotFound
from tokenledger.domain.model import ID_PATTERN
from tokenledger.http.api import caller, json_response, make_resolver, statement_response
from tokenledger.http.requests import reason
from tokenledger.http.shapes import Body, Path, Query, Shape, ok_response, problem_responses
from tokenledger.observability import make_tracer
from tokenledger.service.reconcile.account import audit_account, repair_account
from tokenledger.service.reconcile.ports import REPORTS_LIST_MAX
from tokenledger.service.statements import INSTANT_CHARS_MAX, statement

logger = Logger()
tracer = make_tracer()
app = make_resolver()
wiring = bootstrap.build_audit(bootstrap.Settings.from_env())
writer = wiring.writer

UserId = Annotated[str, Path(pattern=ID_PATTERN)]


class RepairIn(Shape):
    reason: str | None = reason(default=None)


@app.get(
    "/v1/admin/accounts/<user_id>/audit",
    responses={**ok_response(200, "AuditOut", "One account's chain checked"), **problem_responses(401, 403, 422)},
)
def get_account_audit(user_id: UserId) -> Response[dict]:
    return json_response(200, audit_account(wiring.probe, user_id, wiring.payments))


@app.post(
    "/v1/admin/accounts/<user_id>/repair",
    responses={
        **ok_response(200, "RepairOut", "The account item before and after"),
        **problem_responses(401, 403, 409, 422),
    },
)
def post_account_repair(user_id: UserId, body: Annotated[RepairIn, Body()]) -> Response[dict]:
    admin = caller(app)
    result = repair_account(
        wiring.probe,
        writer,
        user_id,
        actor=admin.sub,
        reason=body.reason,
        now=wiring.clock(),
        record_id=wiring.new_id(),
    )
    if result["repaired"]:
        logger.info("account repaired", extra={"user_id": user_id, "actor": admin.sub, **result})
    return json_response(200, result)


@app.get(
    "/v1/admin/accounts/<user_id>/statement",
    responses={
        **ok_response(200, "StatementOut", "Any user's entries from..to, oldest first (or CSV with Accept: text/csv)"),
        **problem_responses(401, 403, 422),
    },
)
def get_account_statement(
    user_id: UserId,
    from_: Annotated[str, Query(alias="from", max_length=INSTANT_CHARS_MAX)],
    to: Annotated[str, Query(max_length=INSTANT_CHARS_MAX)],
) -> Response[Any]:
    return statement_response(app, statement(writer, user_id, from_, to))


@app.get(
    "/v1/admin/reports/latest",
    responses={
        **ok_response(200, "ReportOut", "The latest reconciliation report"),
        **problem_responses(401, 403, 404, 422),
    },
)
def get_latest_report() -> Response[dict]:
    report = wiring.store.latest()
    if report is None:
        raise NotFound("no reconciliation has run yet")
    return json_response(200, report)


REPORTS_LIST_DEFAULT = 20


@app.get(
    "/v1/admin/reports",
    responses={
        **ok_response(200, "ReportListOut", "Past reconciliation runs, newest first, without their findings"),
        **problem_responses(401, 403, 422),
    },
)
def list_reports(
    limit: Annotated[int, Query(ge=1, le=REPORTS_LIST_MAX)] = REPORTS_LIST_DEFAULT,
) -> Response[dict]:
    return json_response(200, {"reports": wiring.store.recent(limit)})


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)


tokenledger.coldstart.end_of_init()  # the last line: init is over (tokenledger/coldstart.py, 5.)
