"""The chaos workload: seeded concurrent clients, faults injected, every invariant checked after.

    python -m infra.chaos --seed 7 --ops 2000 --clients 8 --fault-rate 0.1 [--engine moto|dynamodb-local]

By responsibility (docs/reliability.md describes the run):

- `run`: the orchestration and the command line (`run()`, `main()`).
- `world`: the set-up: the template's resources on moto / DynamoDB Local and the environment.
- `faults`: the faults injected at the DynamoDB client, and the hook that injects them.
- `workload`: what the template serves (`Features`), the users and the operation mix.
- `operations`: the makers of each kind of operation, bound in one table, `OPERATIONS`.
- `stripe`: Stripe test events, their signature and the webhook operations.
- `client`: one concurrent client: sends, retries until a definite answer.
- `model`: requests, operations and their answers.
- `snapshot`, `verification`, `feature_checks`: the ledger read after the run and the
  invariant checks on it (each raises `InvariantBroken`, never a bare `assert`).
- `events`: outbound events under EventBridge faults, and their check.
- `report`: each check's result, the counts, the faults injected.
"""
