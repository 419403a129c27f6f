"""`tokenledger`, the ops CLI, against the real local stack over HTTP."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infra import cli, devauth
from infra.template import Stack
from tests.integration.local_stack import RunningStack, local_stack

ROUTES = {route.route_key for route in Stack().routes()}


@pytest.fixture(scope="module")
def devkey_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    directory = tmp_path_factory.mktemp("devkey")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(devauth.DEVKEY_ENV_VAR, str(directory))
        yield directory


@pytest.fixture(scope="module")
def stack(devkey_dir: Path) -> Iterator[RunningStack]:
    with local_stack(devkey_dir=devkey_dir) as running:
        yield running


@pytest.fixture
def run(stack: RunningStack, capsys: pytest.CaptureFixture[str]) -> Any:
    """`tokenledger --url <stack> ARGS...` in process: (exit code, stdout, stderr)."""

    def call(*args: str) -> tuple[int, str, str]:
        code = cli.main(["--url", stack.url, *args])
        out, err = capsys.readouterr()
        return code, out, err

    return call


def new_user() -> str:
    return f"u-{uuid.uuid4().hex[:10]}"


def test_token_is_a_development_jwt_with_the_users_groups(run: Any) -> None:
    code, out, _ = run("token", "alice", "--admin", "--json")

    assert code == 0
    minted = json.loads(out)
    assert devauth.verify(minted["token"])["sub"] == "alice"
    assert minted["claims"]["cognito:groups"] == ["admin"]
    assert minted["gateway_claims"]["cognito:groups"] == "[admin]", "as API Gateway passes array claims"


def test_token_prints_only_the_token_for_shell_use(run: Any) -> None:
    code, out, _ = run("token", "bob")

    assert code == 0
    assert out.count("\n") == 1
    assert devauth.verify(out.strip())["sub"] == "bob"


def test_balance_of_a_new_user_is_zero(run: Any) -> None:
    user = new_user()

    code, out, _ = run("balance", user)
    code_json, out_json, _ = run("balance", user, "--json")

    assert code == code_json == 0
    assert out.splitlines()[0].split()[:3] == ["user_id", "balance", "version"]
    assert f"{user}        0        0" in out
    assert json.loads(out_json) | {"updated_at": None} == {
        "user_id": user,
        "balance": 0,
        "version": 0,
        "updated_at": None,
    }


def test_grant_commit_and_history_tell_the_same_story(run: Any) -> None:
    user = new_user()

    granted = run("grant", user, "100", "--reason", "cli test")
    committed = run("commit", user, "30", "--prediction", "p-cli")
    _, out, _ = run("history", user, "--json")

    assert granted[0] == committed[0] == 0
    assert "grant: +100 tokens" in granted[1]
    assert "balance now 70" in committed[1]
    items = json.loads(out)["items"]
    assert [(e["seq"], e["type"], e["amount"], e["balance_after"]) for e in items] == [
        (2, "commitment", -30, 70),
        (1, "grant", 100, 100),
    ]
    table = run("history", user)[1]
    assert "commitment" in table
    assert "prediction:p-cli" in table


def test_a_retried_grant_with_the_same_key_moves_tokens_once(run: Any) -> None:
    user = new_user()
    key = f"ticket-{uuid.uuid4().hex[:8]}"

    first = run("grant", user, "40", "--reason", "support", "--key", key)
    again = run("grant", user, "40", "--reason", "support", "--key", key, "--json")

    assert first[0] == again[0] == 0
    assert json.loads(again[1])["replayed"] is True
    assert json.loads(run("balance", user, "--json")[1])["balance"] == 40


def test_a_refused_commitment_prints_the_problem_and_exits_1(run: Any) -> None:
    user = new_user()

    code, out, err = run("commit", user, "5", "--prediction", "p-x")

    assert code == cli.EXIT_REFUSED
    assert out == ""
    assert "409 insufficient_balance" in err
    assert json.loads(run("balance", user, "--json")[1])["version"] == 0


def test_a_refusal_under_json_is_the_problem_json_on_stderr(run: Any) -> None:
    user = new_user()

    code, out, err = run("commit", user, "5", "--prediction", "p-x", "--json")

    assert code == cli.EXIT_REFUSED
    assert out == ""
    assert err.count("\n") == 1
    problem = json.loads(err)
    assert (problem["status"], problem["code"], problem["shortfall"]) == (409, "insufficient_balance", 5)


def test_with_a_real_token_user_routes_take_no_user(run: Any) -> None:
    user = new_user()
    run("grant", user, "10", "--reason", "token test")
    token = devauth.mint(user)

    code, out, _ = run("balance", "--token", token, "--json")
    committed = run("--token", token, "commit", "4", "--prediction", "p-token")

    assert code == 0
    assert (json.loads(out)["user_id"], json.loads(out)["balance"]) == (user, 10)
    assert committed[0] == 0, committed[2]
    assert "balance now 6" in committed[1]


def test_stripe_purchase_signs_a_checkout_event_the_webhook_accepts(run: Any) -> None:
    if "POST /v1/webhooks/stripe" not in ROUTES:
        pytest.skip("template.yaml has no POST /v1/webhooks/stripe yet (the Stripe issue adds it)")
    user = new_user()
    starter = next(p for p in cli.local_catalog() if p["package_id"] == "starter")

    code, out, err = run("stripe-purchase", user, "--package", "starter")

    assert code == 0, err
    assert "HTTP 200" in out
    balance = json.loads(run("balance", user, "--json")[1])
    assert balance["balance"] == starter["tokens"]
    entry = json.loads(run("history", user, "--json")[1])["items"][0]
    assert entry["type"] == "purchase"
    assert entry["counterparty"] == "stripe"


def test_stripe_signature_is_what_the_stripe_library_verifies() -> None:
    stripe = pytest.importorskip("stripe")
    secret = "whsec_test_secret"
    event = cli.checkout_completed_event("u-1", cli.local_catalog()[0])
    payload = json.dumps(event).encode()

    verified = stripe.Webhook.construct_event(payload, cli.stripe_signature(payload, secret), secret)

    assert verified["type"] == "checkout.session.completed"
    session = verified["data"]["object"]
    assert (session["metadata"]["user_id"], session["metadata"]["package_id"]) == ("u-1", event_package(event))
    assert verified["data"]["object"]["payment_status"] == "paid"
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(payload, cli.stripe_signature(payload, "whsec_other"), secret)


def event_package(event: dict[str, Any]) -> str:
    return str(event["data"]["object"]["metadata"]["package_id"])


def test_stripe_purchase_of_an_unknown_package_is_a_usage_error(run: Any) -> None:
    code, _, err = run("stripe-purchase", "alice", "--package", "diamond")

    assert code == cli.EXIT_USAGE
    assert "unknown package 'diamond'" in err
    assert "starter" in err


def test_audit_reports_each_account(run: Any) -> None:
    if "GET /v1/admin/accounts/{user_id}/audit" not in ROUTES:
        pytest.skip("template.yaml has no GET /v1/admin/accounts/{user_id}/audit yet (the reconciliation issue)")
    users = [new_user(), new_user()]
    run("grant", users[0], "10", "--reason", "audit test")

    code, out, _ = run("audit", *users, "--json")

    assert code == 0
    reports = json.loads(out)
    assert reports["consistent"] is True
    assert [(r["user_id"], r["stored_balance"], r["computed_balance"]) for r in reports["accounts"]] == [
        (users[0], 10, 10),
        (users[1], 0, 0),
    ]


def test_audit_without_users_is_a_usage_error(run: Any) -> None:
    code, _, err = run("audit")

    assert code == cli.EXIT_USAGE
    assert "at least one user" in err


def test_an_unreachable_api_is_a_clear_error(capsys: pytest.CaptureFixture[str], devkey_dir: Path) -> None:
    from infra.dynamodb_local import find_free_port

    url = f"http://127.0.0.1:{find_free_port()}"
    code = cli.main(["--url", url, "balance", "alice"])

    assert code == cli.EXIT_USAGE
    assert f"cannot reach {url}" in capsys.readouterr().err


def test_progress_bar_draws_on_a_terminal_only() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal, pipe = Terminal(), io.StringIO()
    for stream in (terminal, pipe):
        with cli.Progress("auditing", 4, stream=stream) as progress:
            for _ in range(4):
                progress.advance()

    assert terminal.getvalue().endswith("\rauditing [" + "#" * 30 + "] 4/4\n")
    assert pipe.getvalue() == ""


def test_settle_ends_a_prediction_through_the_api_and_the_local_queue(run: Any, tmp_path: Path) -> None:
    alice, bob, prediction = new_user(), new_user(), f"p-{uuid.uuid4().hex[:8]}"
    for user in (alice, bob):
        assert run("grant", user, "100", "--reason", "funds")[0] == 0
    assert run("commit", alice, "30", "--prediction", prediction)[0] == 0
    assert run("commit", bob, "20", "--prediction", prediction)[0] == 0
    payouts = tmp_path / "payouts.csv"
    payouts.write_text(f"user_id,amount\n{alice},50\n", encoding="utf-8")
    argv = ("settle", prediction, "--payouts", str(payouts), "--reason", "alice won", "--json")

    code, out, _ = run(*argv, "--wait")  # make run's queue pump plays the settlement worker
    assert code == 0
    done = json.loads(out)
    assert (done["status"], done["paid_total"], done["taken_in"]) == ("completed", 50, 50)
    code, out, _ = run(*argv)  # the same command again: the same settlement, nothing paid twice
    assert code == 0 and json.loads(out)["settlement_id"] == done["settlement_id"]
    assert json.loads(run("balance", alice, "--json")[1])["balance"] == 120
    code, _, err = run("commit", bob, "1", "--prediction", prediction)
    assert code == 1 and "prediction_closed" in err
    code, _, err = run("settle", prediction, "--cancel", "--payouts", str(payouts), "--reason", "x")
    assert code == 2


def test_the_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "tokenledger"
    if not script.exists():
        pytest.skip(f"no console script next to {sys.executable} (install with pip install -e .)")

    done = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60, check=False)

    assert done.returncode == 0
    for command in ("token", "balance", "history", "grant", "stripe-purchase", "audit"):
        assert command in done.stdout


def test_batch_from_csv_then_reverse_then_balances_agree(run: Any, tmp_path: Path) -> None:
    alice, bob = new_user(), new_user()
    csv_file = tmp_path / "ops.csv"
    csv_file.write_text(f"user_id,type,amount,related_id\n{alice},grant,50,\n{bob},payout,30,p-9\n", encoding="utf-8")

    code, out, err = run("batch", str(csv_file), "--reason", "cli batch", "--json")
    assert code == 0, err
    written = json.loads(out)
    assert written["balances"] == {alice: 50, bob: 30}
    assert [(e["user_id"], e["type"], e["amount"]) for e in written["entries"]] == [
        (alice, "grant", 50),
        (bob, "payout", 30),
    ]

    reversed_ = run("reverse", written["entries"][1]["entry_id"], "--reason", "paid by mistake")
    again = run("reversal", written["entries"][1]["entry_id"], "--reason", "paid by mistake")
    code, out, _ = run("balances", alice, bob, "--json")

    assert reversed_[0] == 0, reversed_[2]
    assert "reversed: -30 tokens for " + bob in reversed_[1]
    assert again[0] == cli.EXIT_REFUSED
    assert "409 already_reversed" in again[2]
    assert json.loads(out) == {
        "balances": [{"user_id": alice, "balance": 50, "version": 1}, {"user_id": bob, "balance": 0, "version": 2}],
        "total": 50,
    }


def test_batch_from_json_and_its_file_errors(run: Any, tmp_path: Path) -> None:
    user = new_user()
    good = tmp_path / "ops.json"
    good.write_text(
        json.dumps({"reason": "from json", "operations": [{"user_id": user, "type": "grant", "amount": 7}]})
    )
    bad_amount = tmp_path / "bad.csv"
    bad_amount.write_text(f"user_id,type,amount\n{user},grant,1.5\n", encoding="utf-8")
    not_json = tmp_path / "broken.json"
    not_json.write_text("{", encoding="utf-8")

    code, out, err = run("batch", str(good))
    assert code == 0, err
    assert f"1 entries written in one transaction; balances: {user} 7" in out
    for path, says in (
        (bad_amount, "bad.csv:2: amount: '1.5' is not a whole number"),
        (not_json, "broken.json: not JSON"),
        (tmp_path / "missing.csv", "cannot read"),
    ):
        code, out, err = run("batch", str(path), "--reason", "r")
        assert (code, out) == (cli.EXIT_USAGE, ""), err
        assert says in err
        assert err.count("\n") == 1


def test_repair_reconcile_and_reports(run: Any) -> None:
    user = new_user()
    run("grant", user, "5", "--reason", "before the run")

    repaired = run("repair", user, "--reason", "cli test", "--json")
    reconciled = run("reconcile", "--json")
    latest = run("reports", "latest", "--json")
    default_view = run("reports")
    listed = run("reports", "list", "--limit", "1", "--json")

    assert repaired[0] == 0, repaired[2]
    assert json.loads(repaired[1])["repaired"] is False
    report = json.loads(reconciled[1])
    assert reconciled[0] == (0 if report["healthy"] else cli.EXIT_INCONSISTENT), reconciled[2]
    assert report["accounts_checked"] >= 1
    assert json.loads(latest[1])["run_id"] == report["run_id"]
    assert default_view[0] == reconciled[0]
    assert f"run {report['run_id']}" in default_view[1]
    assert [r["run_id"] for r in json.loads(listed[1])["reports"]] == [report["run_id"]]


# ---------------------------------------------------------------- the Stripe development loop (docs/stripe.md)
def test_checkout_pay_then_refund_and_dispute_by_payment_id(run: Any) -> None:
    user = new_user()

    code, out, err = run("checkout", user, "--package", "starter", "--pay")
    assert code == 0, err
    payment = out.split("paid: payment ", 1)[1].split()[0]
    assert payment.startswith("pi_") and f"balance of {user} now 100" in out

    refund = run("stripe-refund", payment, "--amount", "250")  # half of 499 cents: floor(100 * 250 / 499) = 50
    dispute = run("stripe-dispute", payment)
    history = json.loads(run("history", user, "--json")[1])["items"]

    assert refund[0] == 0 and dispute[0] == 0, (refund[2], dispute[2])
    assert f"for payment {payment}" in refund[1]
    assert [(e["type"], e["amount"], e["balance_after"]) for e in history] == [
        ("chargeback", -50, 0),
        ("chargeback", -50, 50),
        ("purchase", 100, 100),
    ]
    assert {e["related_id"] for e in history} == {payment}


def test_stripe_event_sends_any_event_file_signed(run: Any) -> None:
    events = Path(__file__).resolve().parent.parent / "events"

    ignored = run("stripe-event", str(events / "stripe_payment_intent_succeeded.json"), "--new-id")
    not_json = run("stripe-event", str(events.parent / "conftest.py"))
    unknown_payment = run("stripe-refund", "pi_nobodypaidthis")

    assert ignored[0] == 0 and "HTTP 200" in ignored[1], ignored[2]
    assert not_json[0] == 2 and "not JSON" in not_json[2]
    assert unknown_payment[0] == 2 and "--charge-amount" in unknown_payment[2]
