"""Chronoq API requests, pre-encoded for the load generator."""

from __future__ import annotations

import json
from typing import Any

from bench.httpclient import build_request

NOOP_PAYLOAD = "noop"
PROJECT_ID = "bench"


def noop_spec(**extra: Any) -> dict[str, Any]:
    return {"project_id": PROJECT_ID, "payload": NOOP_PAYLOAD, **extra}


def dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def post(host: str, path: str, user: str, body: Any) -> bytes:
    """``POST path`` as ``user`` with a JSON body."""
    return build_request("POST", path, host=host, headers={"X-User-ID": user}, body=dumps(body))


def submit_requests(host: str, user: str, jobs: int) -> list[bytes]:
    """``jobs`` seed submissions (``POST /submit``), one no-op job each."""
    return [post(host, "/submit", user, noop_spec())] * jobs


def batch_requests(host: str, user: str, jobs: int, size: int, **spec: Any) -> list[bytes]:
    """``jobs`` no-op jobs through ``POST /v1/jobs:batch``, ``size`` per request."""
    cache: dict[int, bytes] = {}
    requests = []
    for start in range(0, jobs, size):
        count = min(size, jobs - start)
        if count not in cache:
            cache[count] = post(host, "/v1/jobs:batch", user, {"jobs": [noop_spec(**spec)] * count})
        requests.append(cache[count])
    return requests
