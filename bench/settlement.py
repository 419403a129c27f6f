"""One-off scale run of settlements on DynamoDB Local (docs/admin.md): not part of `make bench`.

    python -m bench.settlement [--payouts 100000] [--commitments 100000]

1. **Resolved, N payouts**: `Predictions.settle` (what POST .../settlement does: validate, close,
   sum the stakes, store the plan, the settlement item) with N payouts to new users covered by a
   house contribution, then the worker (`Predictions.work`, as the SQS handler calls it) until
   `completed`, following its hand-over messages.
2. **Cancelled, N commitments**: N stake items (one commitment each, N users) seeded with
   BatchWriteItem, as N commitments would have left them, then settle `cancelled` and work.

Prints time, transactions, DynamoDB requests and peak memory (ru_maxrss) of each phase, and
checks the outcome (every account paid once: balance and version read back for a sample,
paid_total and entries_written for all).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sys
import time
import uuid
from collections import Counter
from typing import Any

from bench.harness import STACK, prepare_environment


class CountingQueue:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    def send(self, message: dict[str, Any]) -> None:
        self.messages.append(message)


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _count_requests(client: Any, counter: Counter[str]) -> None:
    def before(event_name: str, **_kwargs: Any) -> None:
        counter[event_name.rsplit(".", 1)[-1]] += 1

    client.meta.events.register("before-call.dynamodb.*", before)


def _world() -> Any:
    from tokenledger.bootstrap import Settings, build_predictions

    queue = CountingQueue()
    predictions = build_predictions(Settings.from_env(), queue=queue)
    return predictions, predictions.admin.ledger.repo.client, queue  # type: ignore[attr-defined]


RETRIES_MAX = 100


def _work_until_done(predictions: Any, queue: CountingQueue, prediction_id: str) -> tuple[int, int, float]:
    """Deliver messages as SQS would; a worker error puts its message back (redelivery), as on AWS."""
    started = time.perf_counter()
    messages = retries = 0
    while queue.messages:
        message = queue.messages.pop(0)
        messages += 1
        # Hand over every 50 s, like a 60 s Lambda with its 10 s margin.
        deadline = time.monotonic() + 60

        def remaining_ms(deadline: float = deadline) -> int:
            return int((deadline - time.monotonic()) * 1000)

        try:
            status = predictions.work(message["prediction_id"], message["settlement_id"], remaining_ms=remaining_ms)
        except Exception as error:  # a timeout on the loaded local engine: the message comes back
            retries += 1
            print(f"worker error ({type(error).__name__}), message redelivered", file=sys.stderr, flush=True)
            if retries > RETRIES_MAX:
                raise
            queue.messages.append(message)
            continue
        if status in ("completed", "failed"):
            break
    return messages, retries, time.perf_counter() - started


def run_phase(name: str, prediction_id: str, request: Any, *, seed: Any = None) -> dict[str, Any]:
    from tokenledger.service.idempotency import IdempotencyScope, request_hash

    predictions, client, queue = _world()
    counter: Counter[str] = Counter()
    _count_requests(client, counter)
    seeded_s = 0.0
    if seed is not None:
        started = time.perf_counter()
        seed(client)
        seeded_s = time.perf_counter() - started
        counter.clear()
    scope = IdempotencyScope(caller="ops:bench", route="bench", key=uuid.uuid4().hex, request_hash=request_hash(name))
    started = time.perf_counter()
    answer = predictions.settle(prediction_id, request, actor="ops:bench", scope=scope)
    accept_s = time.perf_counter() - started
    accept_requests = sum(counter.values())
    counter.clear()
    messages, retries, work_s = _work_until_done(predictions, queue, prediction_id)
    final = predictions.settlement(prediction_id)
    result = {
        "phase": name,
        "seed_s": round(seeded_s, 1),
        "accept_s": round(accept_s, 2),
        "accept_requests": accept_requests,
        "work_s": round(work_s, 1),
        "work_messages": messages,
        "worker_errors_resumed": retries,
        "work_requests": dict(counter),
        "transactions": counter.get("TransactWriteItems", 0),
        "status": final["status"],
        "chunks_total": final["chunks_total"],
        "paid_total": final["paid_total"],
        "payouts_total": answer.body["payouts_total"],
        "entries_written": final["entries_written"],
        "payouts_per_s": round(final["entries_written"] / work_s, 1) if work_s else None,
        "peak_rss_mb": round(_peak_mb(), 1),
    }
    print(json.dumps(result), flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--payouts", type=int, default=100_000)
    parser.add_argument("--commitments", type=int, default=100_000)
    args = parser.parse_args(argv)

    from infra.world import ENGINE_DYNAMODB_LOCAL, local_world
    from tokenledger.service.predictions import SettlementRequest

    prepare_environment()
    with local_world(STACK, ENGINE_DYNAMODB_LOCAL):
        results = []
        if args.payouts:
            users = [f"u-{uuid.uuid4().hex[:12]}" for _ in range(args.payouts)]
            payouts = [(u, random.randint(1, 1000)) for u in users]
            request = SettlementRequest(
                outcome="resolved", reason="bench", payouts=payouts, house_contribution=sum(a for _, a in payouts)
            )
            results.append(run_phase(f"resolved_{args.payouts}_payouts", f"p-bench-{uuid.uuid4().hex[:6]}", request))
        if args.commitments:
            prediction_id = f"p-bench-{uuid.uuid4().hex[:6]}"
            stakes = [(f"u-{uuid.uuid4().hex[:12]}", random.randint(1, 1000)) for _ in range(args.commitments)]

            def seed(client: Any) -> None:
                table = os.environ["PREDICTIONS_TABLE"]
                for start in range(0, len(stakes), 25):
                    requests = [
                        {
                            "PutRequest": {
                                "Item": {
                                    "pk": {"S": f"prediction|{prediction_id}"},
                                    "sk": {"S": f"stake|{u}|{uuid.uuid4().hex}"},
                                    "user_id": {"S": u},
                                    "amount": {"N": str(a)},
                                }
                            }
                        }
                        for u, a in stakes[start : start + 25]
                    ]
                    pending: dict[str, Any] = {table: requests}
                    while pending:
                        pending = client.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}

            request = SettlementRequest(outcome="cancelled", reason="bench")
            results.append(run_phase(f"cancelled_{args.commitments}_commitments", prediction_id, request, seed=seed))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
