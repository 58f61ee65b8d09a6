"""Parsing ``--blob s3://bucket/prefix?option=value&...`` into ``S3Options``.

Every problem is a one-line ``ConfigError`` that names the setting (``blob``) and
never echoes a secret (the URL carries none: credentials come from the standard
AWS environment variables and files, see docs/backends/s3.md).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from chronoq.errors import ConfigError

SETTING = "blob"
Bad = Callable[[str], ConfigError]
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_PREFIX = re.compile(r"^[A-Za-z0-9._/-]{0,200}$")
_BOOL = {"1": True, "true": True, "yes": True, "on": True,
         "0": False, "false": False, "no": False, "off": False}  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class S3Options:
    bucket: str
    prefix: str = ""
    """Key prefix without slashes at either end ("" = the bucket's root)."""
    endpoint: str | None = None
    """``http(s)://host[:port]`` of an S3-compatible server; None = AWS."""
    region: str | None = None
    """None = from the AWS environment / config file, else ``us-east-1``."""
    profile: str | None = None
    anonymous: bool = False
    """Unsigned requests (a server without authentication)."""
    imds: bool = False
    """Allow the EC2 instance metadata service as a credential source (off: never
    probe 169.254.169.254, as with ``AWS_EC2_METADATA_DISABLED=true``)."""
    create_bucket: bool = True
    addressing: str = "path"
    connect_timeout: float = 2.0
    read_timeout: float = 10.0
    max_attempts: int = 2
    """botocore's total attempts per call (1 = no retry), standard retry mode."""
    max_connections: int = 64
    """HTTP connections kept to S3 (botocore's default, 10, would queue the downloads of
    a busy worker behind each other)."""


_OPTIONS = {"endpoint", "region", "profile", "anonymous", "imds", "create_bucket", "addressing",
            "connect_timeout", "read_timeout", "max_attempts", "max_connections"}  # fmt: skip


def parse_s3_url(url: str) -> S3Options:
    def bad(why: str) -> ConfigError:
        return ConfigError(f"{SETTING}: {why} (in {_redacted(url)!r}; see docs/backends/s3.md)")

    parts = urlsplit(url)
    if parts.scheme != "s3":
        raise bad("not an s3://bucket/prefix URL")
    if "@" in parts.netloc:
        raise bad("no credentials in the URL: use the AWS environment or config files")
    bucket = parts.netloc
    if not _BUCKET.match(bucket) or ".." in bucket:
        raise bad(f"invalid bucket name {bucket!r} (3-63 of a-z 0-9 . -)")
    prefix = parts.path.strip("/")
    if not _PREFIX.match(prefix) or ".." in prefix.split("/") or "//" in prefix:
        raise bad("the prefix may hold only A-Z a-z 0-9 . _ - and single slashes")
    if parts.fragment:
        raise bad("no #fragment allowed")
    try:
        query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise bad("malformed query string") from None
    unknown = set(query) - _OPTIONS
    if unknown:
        raise bad(f"unknown option(s) {sorted(unknown)}; known: {sorted(_OPTIONS)}")
    twice = sorted(k for k, v in query.items() if len(v) > 1)
    if twice:
        raise bad(f"option(s) {twice} given twice")
    opt = {k: v[0] for k, v in query.items()}
    return S3Options(
        bucket=bucket,
        prefix=prefix,
        endpoint=_endpoint(opt.get("endpoint"), bad),
        region=_name(opt.get("region"), "region", bad),
        profile=_name(opt.get("profile"), "profile", bad),
        anonymous=_flag(opt, "anonymous", False, bad),
        imds=_flag(opt, "imds", False, bad),
        create_bucket=_flag(opt, "create_bucket", True, bad),
        addressing=_choice(opt.get("addressing", "path"), ("path", "virtual"), bad),
        connect_timeout=_seconds(opt, "connect_timeout", 2.0, bad),
        read_timeout=_seconds(opt, "read_timeout", 10.0, bad),
        max_attempts=_count(opt.get("max_attempts", "2"), "max_attempts", 10, bad),
        max_connections=_count(opt.get("max_connections", "64"), "max_connections", 1000, bad),
    )


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    if "@" in parts.netloc:
        return parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]).geturl()
    return url


def _endpoint(value: str | None, bad: Bad) -> str | None:
    if value is None:
        return None
    parts = urlsplit(value)
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise bad(f"bad port in endpoint {value!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path.strip("/"):
        raise bad(f"endpoint must be http(s)://host[:port], not {value!r}")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise bad("endpoint must be http(s)://host[:port] (nothing else)")
    return f"{parts.scheme}://{parts.netloc}"


def _name(value: str | None, what: str, bad: Bad) -> str | None:
    if value is None:
        return None
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", value):
        raise bad(f"invalid {what} {value!r}")
    return value


def _flag(opt: dict[str, str], name: str, default: bool, bad: Bad) -> bool:
    if name not in opt:
        return default
    value = _BOOL.get(opt[name].lower())
    if value is None:
        raise bad(f"{name} must be true or false, not {opt[name]!r}")
    return value


def _choice(value: str, choices: tuple[str, ...], bad: Bad) -> str:
    if value not in choices:
        raise bad(f"addressing must be one of {', '.join(choices)}")
    return value


def _seconds(opt: dict[str, str], name: str, default: float, bad: Bad) -> float:
    if name not in opt:
        return default
    try:
        value = float(opt[name])
    except ValueError:
        value = math.nan
    if not (0 < value <= 3600):
        raise bad(f"{name} must be seconds in (0, 3600], not {opt[name]!r}")
    return value


def _count(value: str, name: str, most: int, bad: Bad) -> int:
    if not value.isdigit() or not 1 <= int(value) <= most:
        raise bad(f"{name} must be 1-{most}, not {value!r}")
    return int(value)
