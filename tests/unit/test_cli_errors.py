"""The CLI's one error path: one line on stderr (a problem JSON under --json), exit 2 or 1, no traceback.

In process and without a server: every case here fails before a request, or at the connection.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from infra import cli, devauth
from infra.cli import core


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(devauth.DEVKEY_ENV_VAR, str(tmp_path / "devkey"))
    for name in (core.URL_ENV_VAR, core.TOKEN_ENV_VAR, core.DEBUG_ENV_VAR):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Any:
    def call(*args: str) -> tuple[int, str, str]:
        code = cli.main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    return call


def one_line(err: str) -> str:
    assert err.count("\n") == 1, f"not one line: {err!r}"
    assert "Traceback" not in err
    return err.strip()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["commit", "alice", "0", "--prediction", "p-1"], "argument amount: 0 is not within 1..1000000000"),
        (["commit", "alice", "ten", "--prediction", "p-1"], "argument amount: 'ten' is not a whole number"),
        (["history", "alice", "--limit", "0"], "argument --limit: 0 is not within 1..10000"),
        (["history", "alice", "--limit", "10001"], "argument --limit: 10001 is not within 1..10000"),
        (["token", "alice", "--ttl", "x"], "argument --ttl: 'x' is not a whole number"),
        (["balance", "--as", "", "alice"], "argument --as: a user id cannot be empty"),
        (["balance", ""], "argument user: a user id cannot be empty"),
        (["token", ""], "argument user: a user id cannot be empty"),
        (["grant", "alice", "5", "--reason", " "], "argument --reason: cannot be empty"),
        (["commit", "alice", "5"], "the following arguments are required: --prediction"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        ([], "the following arguments are required: COMMAND"),
        (["balance"], "name the user (or pass --token with a real token)"),
        (["--token", "eyJ.x.y", "balance", "alice"], "--token already says who is calling; leave out the user 'alice'"),
        (["--token", "eyJ.x.y", "--as", "root", "grant", "bob", "5", "--reason", "r"], "--as names the admin"),
        (["--token", "", "balance"], "--token cannot be empty"),
        (["audit", "--file", "/nonexistent/ids.txt"], "cannot read /nonexistent/ids.txt: No such file or directory"),
        (["--url", "localhost:3000", "balance", "alice"], "--url must start with http:// or https://"),
        (["--url", "https://api.example.com", "reconcile"], "is not the local stack: pass --stack NAME"),
        (["batch", "ops.csv"], "cannot read ops.csv: No such file or directory"),
        (["reports", "list", "--limit", "101"], "argument --limit: 101 is not within 1..100"),
        (["reverse", "01J", "--reason", ""], "argument --reason: cannot be empty"),
        (["stripe-purchase", "alice", "--package", "diamond"], "unknown package 'diamond'; the catalog has:"),
    ],
)
def test_a_usage_error_is_one_line_and_exit_2(run: Any, args: list[str], says: str) -> None:
    code, out, err = run(*args)

    assert code == cli.EXIT_USAGE
    assert out == ""
    line = one_line(err)
    assert line.startswith("error: ")
    assert says in line
    assert "_positive" not in line
    assert "invalid" not in line or "invalid choice" in line


def test_the_token_from_the_environment_with_a_user_is_a_usage_error_naming_the_variable(
    run: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(core.TOKEN_ENV_VAR, "eyJ.x.y")

    code, _, err = run("history", "alice")

    assert code == cli.EXIT_USAGE
    assert "TOKENLEDGER_TOKEN already says who is calling" in one_line(err)


def test_under_json_a_usage_error_is_a_problem_json_on_stderr(run: Any) -> None:
    for args in (["commit", "alice", "-5", "--prediction", "p", "--json"], ["--json", "audit"]):
        code, out, err = run(*args)

        assert code == cli.EXIT_USAGE
        assert out == ""
        problem = json.loads(one_line(err))
        assert problem["code"] == "usage_error"
        assert problem["exit_code"] == 2
        assert problem["type"].endswith("/usage_error")
        assert problem["detail"]


def test_global_options_are_accepted_after_the_command_and_the_later_one_wins() -> None:
    parser = cli.build_parser()

    before = parser.parse_args(["--url", "http://a", "--json", "balance", "alice"])
    after = parser.parse_args(["balance", "alice", "--url", "http://b", "--as", "root", "--json"])
    both = parser.parse_args(["--url", "http://a", "balance", "alice", "--url", "http://b"])

    assert (before.url, before.json, before.user) == ("http://a", True, "alice")
    assert (after.url, after.admin_sub, after.json) == ("http://b", "root", True)
    assert both.url == "http://b"


def test_the_url_comes_from_the_environment_unless_given(run: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from infra.dynamodb_local import find_free_port

    env_url = f"http://127.0.0.1:{find_free_port()}"
    monkeypatch.setenv(core.URL_ENV_VAR, env_url)
    monkeypatch.setattr("infra.cli.client.RETRY_DELAY_S", 0)

    code, _, err = run("balance", "alice")
    code_json, _, err_json = run("balance", "alice", "--json")

    assert code == code_json == cli.EXIT_USAGE
    assert f"cannot reach {env_url}" in one_line(err)
    assert "TOKENLEDGER_URL" in err, "the hint says how to point the CLI at the server"
    assert json.loads(one_line(err_json))["code"] == "connection_error"


def test_help_exits_0_and_lists_every_command(run: Any) -> None:
    code, out, _ = run("--help")

    assert code == 0
    for command in ("token", "balance", "history", "commit", "grant", "stripe-purchase", "audit"):
        assert command in out


def test_an_aws_error_is_a_refusal_and_no_credentials_a_usage_error(run: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from botocore.exceptions import ClientError, NoCredentialsError

    def refuse(args: Any) -> int:
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "StartExecution")

    def no_credentials(args: Any) -> int:
        raise NoCredentialsError()

    monkeypatch.setattr("infra.cli.commands.dev.token", refuse)
    code, _, err = run("token", "alice")
    assert (code, one_line(err)) == (cli.EXIT_REFUSED, "error: AWS refused StartExecution: AccessDenied: no")

    monkeypatch.setattr("infra.cli.commands.dev.token", no_credentials)
    code, _, err = run("token", "alice")
    assert code == cli.EXIT_USAGE
    assert one_line(err) == "error: AWS: Unable to locate credentials"


def test_a_bug_is_reported_in_one_line_with_how_to_see_the_traceback(run: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(args: Any) -> int:
        raise KeyError("entry")

    monkeypatch.setattr("infra.cli.commands.dev.token", broken)

    code, _, err = run("token", "alice")

    assert code == 70
    assert "unexpected KeyError" in one_line(err)
    assert "TOKENLEDGER_DEBUG=1" in err
