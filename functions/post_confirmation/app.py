"""Cognito PostConfirmation trigger: open the new user's account, with the optional welcome grant."""

from __future__ import annotations

import tokenledger.coldstart  # isort: skip - first: it trims what the imports below load

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.data_classes.cognito_user_pool_event import PostConfirmationTriggerEvent
from aws_lambda_powertools.utilities.typing import LambdaContext

from tokenledger import bootstrap
from tokenledger.observability import make_tracer

CONFIRM_SIGN_UP = "PostConfirmation_ConfirmSignUp"

logger = Logger()
tracer = make_tracer()
opening = bootstrap.build_account_opening(bootstrap.Settings.from_env())
admin_ops = opening.admin
WELCOME_GRANT_TOKENS = opening.welcome_grant_tokens


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    trigger = PostConfirmationTriggerEvent(event)
    # The same trigger fires after a forgotten password is reset: only a sign-up opens an account.
    if trigger.trigger_source == CONFIRM_SIGN_UP:
        user_id = trigger.request.user_attributes["sub"]
        admin_ops.open_account(user_id, welcome_grant_tokens=WELCOME_GRANT_TOKENS)
        logger.info("account opened", extra={"user_id": user_id, "welcome_grant_tokens": WELCOME_GRANT_TOKENS})
    return event


tokenledger.coldstart.end_of_init()  # the last line: init is over (tokenledger/coldstart.py, 5.)
