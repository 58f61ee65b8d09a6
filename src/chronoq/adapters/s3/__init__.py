"""S3 adapters: the blob store (``--blob s3://bucket/prefix?endpoint=...&region=...``).

``blob_store(url)`` parses and validates the URL at once (a one-line ``ConfigError``
naming the setting ``blob``); the client connects in ``start``. aiobotocore is imported
only when an S3 backend is chosen (docs/backends/s3.md).
"""

from __future__ import annotations

from typing import Any

from chronoq.adapters.s3.url import S3Options, parse_s3_url

__all__ = ["S3Options", "blob_store", "parse_s3_url"]


def blob_store(url: str) -> Any:
    """``--blob s3://...``: an ``S3BlobStore`` (not started)."""
    options = parse_s3_url(url)
    from chronoq.adapters.s3.blob import S3BlobStore

    return S3BlobStore(options)
