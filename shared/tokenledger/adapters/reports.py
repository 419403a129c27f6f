"""Reconciliation reports and balance snapshots in the reports bucket (S3).

Layout, all under `reports/` (the only prefix the functions may touch):

    reports/latest.json                               the latest report (written last)
    reports/<YYYY>/<MM>/<DD>/<run_id>.json            every report, kept (lifecycle: colder storage)
    reports/<YYYY>/<MM>/<DD>/<run_id>.snapshot.jsonl  every account's balance and version at the cut
    reports/runs/<run_id>/part-<start>-<end>.json     partial reports of a fanned-out run (expire)
    reports/runs/<run_id>/part-<start>-<end>.snapshot.jsonl

A snapshot is written line by line to a temporary file and uploaded from there, so it
never sits in memory whole.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import IO, Any

from botocore.exceptions import ClientError

from tokenledger.service.reconcile.ports import REPORTS_LIST_MAX

REPORTS_PREFIX = "reports/"
LATEST_KEY = "reports/latest.json"
RUNS_PREFIX = "reports/runs/"
SNAPSHOT_SUFFIX = ".snapshot.jsonl"
REPORT_BYTES_MAX = 64 * 1024 * 1024  # a report is read whole: refuse anything absurd
SPOOL_BYTES_MAX = 8 * 1024 * 1024  # snapshot bytes kept in memory before spilling to /tmp
_YEAR_PREFIX = re.compile(r"reports/\d{4}/")
_MONTH_PREFIX = re.compile(r"reports/\d{4}/\d{2}/")
_REPORT_KEY = re.compile(r"reports/\d{4}/\d{2}/\d{2}/[A-Za-z0-9_-]+\.json")


def dated_prefix(started_at: str) -> str:
    """`reports/YYYY/MM/DD/` from an ISO 8601 timestamp such as 2026-11-25T03:00:00.000Z."""
    year, month, day = started_at[:10].split("-")
    return f"{REPORTS_PREFIX}{year}/{month}/{day}/"


def report_summary(report: dict[str, Any], key: str) -> dict[str, Any]:
    """A report without its findings list: the figures a trend chart needs."""
    by_kind: dict[str, int] = dict(report.get("findings_by_kind") or {})
    if not by_kind:  # reports before findings_by_kind: count the listed findings
        for finding in report.get("inconsistencies") or []:
            kind = str(finding.get("kind", "unknown"))
            by_kind[kind] = by_kind.get(kind, 0) + 1
    return {
        "run_id": report.get("run_id"),
        "started_at": report.get("started_at"),
        "finished_at": report.get("finished_at"),
        "accounts_checked": report.get("accounts_checked", 0),
        "entries_checked": report.get("entries_checked", 0),
        "tokens_outstanding": report.get("tokens_outstanding", 0),
        "unrecovered_chargebacks": report.get("unrecovered_chargebacks", 0),
        "findings": sum(by_kind.values()),
        "findings_by_kind": by_kind,
        "healthy": bool(report.get("healthy")),
        "key": key,
    }


def report_key(run_id: str, started_at: str) -> str:
    return f"{dated_prefix(started_at)}{run_id}.json"


def snapshot_key(run_id: str, started_at: str) -> str:
    return f"{dated_prefix(started_at)}{run_id}{SNAPSHOT_SUFFIX}"


def part_key(run_id: str, start: int, end: int) -> str:
    return f"{RUNS_PREFIX}{run_id}/part-{start}-{end}.json"


def part_snapshot_key(run_id: str, start: int, end: int) -> str:
    return f"{RUNS_PREFIX}{run_id}/part-{start}-{end}{SNAPSHOT_SUFFIX}"


class SnapshotWriter:
    """Collects snapshot lines (each one JSON record, as the service formats it) in a spooled temporary file."""

    def __init__(self, handle: IO[bytes]) -> None:
        self._handle = handle
        self.lines = 0

    def __call__(self, line: str) -> None:
        self._handle.write(line.encode() + b"\n")
        self.lines += 1


class ReportStore:
    def __init__(self, s3: Any, *, bucket: str) -> None:
        self.s3 = s3
        self.bucket = bucket

    # ------------------------------------------------------------ JSON objects
    def put_json(self, key: str, body: dict[str, Any]) -> None:
        self._check_key(key)
        self.s3.put_object(
            Bucket=self.bucket,
            Key=key,
            Body=json.dumps(body, separators=(",", ":"), sort_keys=True).encode(),
            ContentType="application/json",
        )

    def get_json(self, key: str) -> dict[str, Any] | None:
        self._check_key(key)
        try:
            response = self.s3.get_object(Bucket=self.bucket, Key=key)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise
        if int(response.get("ContentLength", 0)) > REPORT_BYTES_MAX:
            raise RuntimeError(f"{key} is larger than {REPORT_BYTES_MAX} bytes")
        loaded: dict[str, Any] = json.loads(response["Body"].read())
        return loaded

    def publish(self, report: dict[str, Any]) -> str:
        """The dated copy first, then `latest.json`: latest never names a report that is not there."""
        key = report_key(report["run_id"], report["started_at"])
        self.put_json(key, report)
        self.put_json(LATEST_KEY, report)
        return key

    def latest(self) -> dict[str, Any] | None:
        return self.get_json(LATEST_KEY)

    def recent(self, limit: int) -> list[dict[str, Any]]:
        """Summaries of the newest `limit` dated reports, newest first (`GET /v1/admin/reports`).

        Walks `reports/<YYYY>/<MM>/` prefixes from the newest down, so the listing costs a few
        requests per month of runs, never a listing of the whole bucket; then reads each report.
        """
        if not 1 <= limit <= REPORTS_LIST_MAX:
            raise ValueError(f"limit must be 1..{REPORTS_LIST_MAX}")
        keys: list[str] = []
        for year in self._child_prefixes(REPORTS_PREFIX, _YEAR_PREFIX):
            for month in self._child_prefixes(year, _MONTH_PREFIX):
                keys.extend(self._report_keys(month))
                if len(keys) >= limit:
                    break
            if len(keys) >= limit:
                break
        summaries = []
        for key in keys[:limit]:
            report = self.get_json(key)
            if report is not None:
                summaries.append(report_summary(report, key))
        return summaries

    def _child_prefixes(self, prefix: str, pattern: re.Pattern[str]) -> list[str]:
        """The `<prefix><part>/` folders matching `pattern`, newest (largest) first."""
        found: list[str] = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix, Delimiter="/"):
            found.extend(p["Prefix"] for p in page.get("CommonPrefixes", []) if pattern.fullmatch(p["Prefix"]))
        return sorted(found, reverse=True)

    def _report_keys(self, month_prefix: str) -> list[str]:
        """Report keys of one month (snapshots left out), newest first: days, then ULID run ids, sort by time."""
        keys: list[str] = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=month_prefix):
            keys.extend(o["Key"] for o in page.get("Contents", []) if _REPORT_KEY.fullmatch(o["Key"]))
        return sorted(keys, reverse=True)

    # ------------------------------------------------------------ snapshots
    @contextmanager
    def snapshot(self, key: str) -> Iterator[SnapshotWriter]:
        """A writer of snapshot lines, uploaded to `key` when the block ends without error."""
        self._check_key(key)
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES_MAX) as handle:
            writer = SnapshotWriter(handle)
            yield writer
            handle.seek(0)
            self.s3.upload_fileobj(handle, self.bucket, key, ExtraArgs={"ContentType": "application/x-ndjson"})

    def concatenate(self, keys: Sequence[str], into: str) -> None:
        """Stream several snapshot parts into one object (through a spooled temporary file)."""
        self._check_key(into)
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES_MAX) as handle:
            for key in keys:
                self._check_key(key)
                body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"]
                shutil.copyfileobj(body, handle)
            handle.seek(0)
            self.s3.upload_fileobj(handle, self.bucket, into, ExtraArgs={"ContentType": "application/x-ndjson"})

    @staticmethod
    def _check_key(key: str) -> None:
        if not key.startswith(REPORTS_PREFIX) or ".." in key:
            raise ValueError(f"report keys live under {REPORTS_PREFIX}")
