"""`GET /health` and the OpenAPI document."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from .conftest import ServerHandle


def test_health_needs_no_user(server: ServerHandle) -> None:
    r = httpx.get(server.url + "/health", timeout=5.0)
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


def test_openapi_document_lists_the_job_routes(server: ServerHandle) -> None:
    r = httpx.get(server.url + "/openapi.json", timeout=5.0)
    assert r.status_code == 200, r.text[:300]
    doc = json.loads(r.text)  # valid JSON, not just something httpx tolerates
    assert isinstance(doc, dict)
    assert str(doc.get("openapi", "")).startswith("3."), doc.get("openapi")
    paths = doc["paths"]
    for path in ("/submit", "/v1/jobs", "/v1/jobs/{job_id}"):
        assert path in paths, f"{path} missing from OpenAPI paths {sorted(paths)}"
    assert "post" in paths["/submit"]
    assert {"get", "post"} <= set(paths["/v1/jobs"])
    assert {"get", "delete"} <= set(paths["/v1/jobs/{job_id}"])


def test_openapi_document_lists_every_documented_route(server: ServerHandle) -> None:
    doc = httpx.get(server.url + "/openapi.json", timeout=5.0).json()
    expected = {
        "/submit": "post",
        "/job": "get",
        "/jobs": "get",
        "/v1/jobs": "post",
        "/v1/jobs:batch": "post",
        "/v1/jobs/{job_id}": "get",
        "/v1/jobs/{job_id}/runs": "get",
    }
    missing = [
        f"{method.upper()} {path}"
        for path, method in expected.items()
        if method not in doc["paths"].get(path, {})
    ]
    assert not missing, f"documented in docs/api.md but not in /openapi.json: {missing}"
