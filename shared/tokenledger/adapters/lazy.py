"""A boto3 client made on its first call, for clients some requests of a function never use.

A client's service model is loaded when the client is made: an S3 client costs about a third
of the DynamoDB floor's CPU (docs/benchmarks.md). The audit function reads DynamoDB on every
route and S3 only for the latest report, so its S3 client is made when a report is read.
Making it later moves its cost to that request; it never moves it onto a request that does
not need it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


class LazyClient:
    """Stands for `factory()`'s client; the client is made once, on the first attribute read."""

    def __init__(self, factory: Callable[[], Any]) -> None:
        self._factory = factory
        self._client: Any = None
        self._lock = threading.Lock()

    @property
    def made(self) -> bool:
        return self._client is not None

    def __getattr__(self, name: str) -> Any:
        client = self._client
        if client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._factory()
                client = self._client
        return getattr(client, name)
