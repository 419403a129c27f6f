"""The ``tokenledger`` commands: one module per group, found by name (no list to edit).

To add a command, add a module here (a name not starting with ``_``) with a ``register``
function; the core imports every module of this package and calls it::

    import argparse

    from infra.cli.client import path_part
    from infra.cli.core import Commands, user_id
    from infra.cli.errors import UsageError
    from infra.cli.output import emit_json, table


    def register(commands: Commands) -> None:
        p = commands.add("close", close, help="admin: close a prediction to new commitments")
        p.add_argument("prediction_id", type=user_id)  # argparse as usual; the global options come with it


    def close(args: argparse.Namespace) -> int:
        reply = args.client.request("POST", f"/v1/admin/predictions/{path_part(args.prediction_id)}/close", admin=True)
        if args.json:
            emit_json(reply.body)
        else:
            print(f"closed {args.prediction_id} at {reply.body['closed_at']}")
        return 0

The rules the core relies on:

- ``args.client`` (``infra.cli.client.ApiClient``) calls the API: ``request(method, path,
  user=..., admin=True, query=..., body=..., headers=...)``. It signs development tokens (for
  ``user``, or the ``--as`` admin on ``admin=True``) unless ``--token`` gave a real one. A
  user route takes ``add_user_argument`` and ``acting_user(args)``, which refuses a USER
  given together with ``--token``. A POST that moves tokens sends ``idempotency-key`` (take
  ``--key``, default ``client.new_key()``).
- Never print an error yourself and never ``sys.exit``: raise ``UsageError`` (exit 2) for bad
  input, let ``ApiRefused`` (exit 1) propagate from the client. The core prints one line (a
  problem JSON under ``--json``). A missing file (``OSError``) and botocore errors are reported
  by the core too; anything else is a bug and says so.
- Return an exit code (``None`` is 0); ``EXIT_INCONSISTENT`` (3) when a check found a problem.
- Output: ``emit_json`` under ``args.json``, else ``table`` or one sentence per result;
  progress with ``Progress`` (stderr, terminals only). Argument types with messages a person
  understands: ``user_id``, ``tokens``, ``signed_tokens``, ``whole_number(low, high)``,
  ``text_value`` (argparse otherwise says ``invalid <function name> value``).
- Test it in process: ``infra.cli.main([...])`` returns the exit code (tests/integration/test_cli.py).
"""
