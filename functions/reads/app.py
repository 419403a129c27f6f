"""User reads: the package catalog, the caller's balance (now or at a moment), history and statements."""

from __future__ import annotations

import tokenledger.coldstart  # isort: skip - first: it trims what the imports below load

from typing import Annotated, Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from tokenledger import bootstrap
from tokenledger.domain.catalog import load_catalog
from tokenledger.domain.model import AMOUNT_MAX, EntryType
from tokenledger.http.api import caller, json_response, make_resolver, statement_response
from tokenledger.http.shapes import Path, Query, ok_response, problem_responses
from tokenledger.observability import make_tracer
from tokenledger.service.ledger import HISTORY_LIMIT_DEFAULT, HISTORY_LIMIT_MAX
from tokenledger.service.statements import INSTANT_CHARS_MAX, balance_at, statement

logger = Logger()
tracer = make_tracer()
app = make_resolver()
ledger = bootstrap.build_ledger(bootstrap.Settings.from_env())


@app.get(
    "/v1/packages",
    responses={**ok_response(200, "PackagesOut", "The token package catalog"), **problem_responses(401, 422)},
)
def list_packages() -> Response[dict]:
    catalog = load_catalog()
    return json_response(200, {"packages": [p.as_dict() for p in catalog.packages]})


@app.get(
    "/v1/balance", responses={**ok_response(200, "BalanceOut", "The caller's balance"), **problem_responses(401, 422)}
)
def get_balance(
    required: Annotated[int | None, Query(ge=0, le=AMOUNT_MAX)] = None,
    at: Annotated[str | None, Query(max_length=INSTANT_CHARS_MAX)] = None,
) -> Response[dict]:
    user_id = caller(app).sub
    if at is None:
        return json_response(200, ledger.balance(user_id, required=required))
    body = balance_at(ledger.repo, user_id, at)
    if required is not None:
        body["sufficient"] = body["balance"] >= required
        body["shortfall"] = max(0, required - body["balance"])
    return json_response(200, body)


@app.get(
    "/v1/statements",
    responses={
        **ok_response(
            200, "StatementOut", "The caller's entries from..to, oldest first (or CSV with Accept: text/csv)"
        ),
        **problem_responses(401, 422),
    },
)
def get_statement(
    from_: Annotated[str, Query(alias="from", max_length=INSTANT_CHARS_MAX)],
    to: Annotated[str, Query(max_length=INSTANT_CHARS_MAX)],
) -> Response[Any]:
    return statement_response(app, statement(ledger.repo, caller(app).sub, from_, to))


@app.get(
    "/v1/transactions",
    responses={**ok_response(200, "HistoryOut", "The caller's entries, newest first"), **problem_responses(401, 422)},
)
def list_transactions(
    limit: Annotated[int, Query(ge=1, le=HISTORY_LIMIT_MAX)] = HISTORY_LIMIT_DEFAULT,
    cursor: Annotated[str | None, Query(max_length=1024)] = None,
    type: Annotated[EntryType | None, Query()] = None,  # noqa: A002 - the contract's name
) -> Response[dict]:
    body = ledger.history(caller(app).sub, limit=limit, cursor=cursor, entry_type=str(type) if type else None)
    return json_response(200, body)


@app.get(
    "/v1/transactions/<entry_id>",
    responses={**ok_response(200, "EntryOut", "One of the caller's entries"), **problem_responses(401, 404, 422)},
)
def get_transaction(entry_id: Annotated[str, Path(max_length=64)]) -> Response[dict]:
    return json_response(200, ledger.entry(caller(app).sub, entry_id))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)


tokenledger.coldstart.end_of_init()  # the last line: init is over (tokenledger/coldstart.py, 5.)
