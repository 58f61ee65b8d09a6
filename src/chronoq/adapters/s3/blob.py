"""``S3BlobStore``: the Blob port on S3 or any S3-compatible server (SeaweedFS, MinIO...).

One aiobotocore client per process, path-style addressing by default (what
S3-compatible servers on a host:port expect). Credentials come from the standard AWS
chain (environment variables, ``~/.aws/credentials`` and ``~/.aws/config``, SSO, web
identity...) — except the EC2 instance metadata service, which is never probed unless
the URL says ``imds=true``: a machine that is not on EC2 would otherwise wait seconds on
169.254.169.254 before "no credentials".

"S3 down" must fail fast, so connect/read timeouts are short, botocore retries once
(standard mode) and every call has an overall deadline; every failure but "no such
key" comes out as ``UnavailableError`` (retry later; nothing changed), a missing key
as ``NotFoundError``. At start the bucket is checked and created if missing
(``create_bucket=false``: it must exist); problems there are one-line errors naming the
setting ``blob``.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession
from botocore import UNSIGNED
from botocore.exceptions import BotoCoreError, ClientError, ProfileNotFound

from chronoq.adapters.s3.url import SETTING, S3Options
from chronoq.errors import ConfigError, NotFoundError, UnavailableError, ValidationError
from chronoq.ports.blob import BlobEntry

_NOT_FOUND = {"NoSuchKey", "404", "NotFound"}
_NO_BUCKET = {"NoSuchBucket", "404", "NotFound"}
_TRANSPORT = (BotoCoreError, aiohttp.ClientError, OSError, asyncio.TimeoutError)
_PAGE = 1000  # S3's largest ListObjectsV2 page


class S3BlobStore:
    def __init__(self, options: S3Options) -> None:
        self.options = options
        self._stack: contextlib.AsyncExitStack | None = None
        self._client: Any = None
        self._base = f"{options.prefix}/" if options.prefix else ""
        self._deadline = options.max_attempts * (options.connect_timeout + options.read_timeout) + 1
        """Seconds any one call may take, retries included (plus a second of backoff)."""

    @property
    def where(self) -> str:
        o = self.options
        return f"s3://{o.bucket}/{o.prefix} at {o.endpoint or 'AWS'}"

    async def start(self) -> None:
        if self._client is not None:
            return
        o = self.options
        session = AioSession(profile=o.profile)
        try:
            if not o.imds:  # AWS_EC2_METADATA_DISABLED, without touching the environment
                session.get_component("credential_provider").remove("iam-role")
            if not o.anonymous and await session.get_credentials() is None:
                raise ConfigError(
                    f"{SETTING}: no AWS credentials found (set AWS_ACCESS_KEY_ID and"
                    " AWS_SECRET_ACCESS_KEY, a profile in ~/.aws, or anonymous=true)"
                )
            region = o.region or session.get_config_variable("region") or "us-east-1"
        except ProfileNotFound:
            raise ConfigError(f"{SETTING}: AWS profile {o.profile!r} not found") from None
        config = AioConfig(
            connect_timeout=o.connect_timeout,
            read_timeout=o.read_timeout,
            retries={"max_attempts": o.max_attempts, "mode": "standard"},
            max_pool_connections=o.max_connections,
            s3={"addressing_style": o.addressing},
            signature_version=UNSIGNED if o.anonymous else None,
        )
        stack = contextlib.AsyncExitStack()
        try:
            self._client = await stack.enter_async_context(
                session.create_client(
                    "s3", region_name=region, endpoint_url=o.endpoint, config=config
                )
            )
            try:
                async with asyncio.timeout(2 * self._deadline):
                    await self._ensure_bucket(region)
            except TimeoutError:
                raise UnavailableError(f"{SETTING}: {self.where} does not answer") from None
        except BaseException:
            self._client = None
            await stack.aclose()
            raise
        self._stack = stack

    async def close(self) -> None:
        stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            await stack.aclose()

    async def _ensure_bucket(self, region: str) -> None:
        o = self.options
        try:
            await self._client.head_bucket(Bucket=o.bucket)
            return
        except ClientError as exc:
            code, status = _code(exc)
            if code not in _NO_BUCKET:
                why = f"refused ({status} {code}): check the credentials and the bucket policy"
                raise ConfigError(f"{SETTING}: bucket {o.bucket!r} {why}") from None
        except _TRANSPORT as exc:
            raise UnavailableError(f"{SETTING}: cannot reach {self.where}: {_line(exc)}") from None
        if not o.create_bucket:
            raise ConfigError(f"{SETTING}: bucket {o.bucket!r} does not exist (create it, or"
                              " drop create_bucket=false)")  # fmt: skip
        args: dict[str, Any] = {"Bucket": o.bucket}
        if region != "us-east-1":
            args["CreateBucketConfiguration"] = {"LocationConstraint": region}
        try:
            await self._client.create_bucket(**args)
        except ClientError as exc:
            code, status = _code(exc)
            if code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise ConfigError(f"{SETTING}: cannot create bucket {o.bucket!r} ({status}"
                                  f" {code})") from None  # fmt: skip
        except _TRANSPORT as exc:
            raise UnavailableError(f"{SETTING}: cannot reach {self.where}: {_line(exc)}") from None

    # -- the port --------------------------------------------------------------------------

    async def put(self, key: str, data: bytes) -> None:
        client = self._open()
        async with self._errors("put", key):
            await client.put_object(Bucket=self.options.bucket, Key=self._key(key), Body=data)

    async def get(self, key: str) -> bytes:
        client = self._open()
        async with self._errors("get", key):
            resp = await client.get_object(Bucket=self.options.bucket, Key=self._key(key))
            async with resp["Body"] as body:
                data: bytes = await body.read()
                return data

    async def delete(self, key: str) -> None:
        client = self._open()
        async with self._errors("delete", key):
            await client.delete_object(Bucket=self.options.bucket, Key=self._key(key))

    async def list_objects(
        self, prefix: str, *, start_after: str = "", limit: int = 1000
    ) -> list[BlobEntry]:
        client = self._open()
        args: dict[str, Any] = {"Bucket": self.options.bucket, "Prefix": self._base + prefix}
        if start_after:
            args["StartAfter"] = self._base + start_after
        entries: list[BlobEntry] = []
        async with self._errors("list", prefix):
            while len(entries) < limit:
                resp = await client.list_objects_v2(
                    **args, MaxKeys=min(_PAGE, limit - len(entries))
                )
                for item in resp.get("Contents", ()):
                    entries.append(BlobEntry(item["Key"][len(self._base) :], item["LastModified"]))
                token = resp.get("NextContinuationToken")
                if not resp.get("IsTruncated") or not token:
                    break
                args["ContinuationToken"] = token
        return entries[:limit]

    # -- helpers ---------------------------------------------------------------------------

    def _open(self) -> Any:
        if self._client is None:
            raise UnavailableError(f"the S3 blob store ({self.where}) is not started")
        return self._client

    def _key(self, key: str) -> str:
        if not key or key.startswith("/") or len(key) > 900 or "\x00" in key:
            raise ValidationError(f"invalid blob key {key!r}")
        return self._base + key

    @contextlib.asynccontextmanager
    async def _errors(self, operation: str, key: str) -> Any:
        try:
            # botocore's timeouts do not bound everything (an upload to a server that
            # accepts connections but never answers waits on "100 Continue" forever):
            # every call also has an overall deadline.
            async with asyncio.timeout(self._deadline):
                yield
        except ClientError as exc:
            code, status = _code(exc)
            if operation == "get" and code in _NOT_FOUND:
                raise NotFoundError(f"blob {key!r} not found") from None
            raise UnavailableError(
                f"S3 {operation} of {key!r} failed ({status} {code}) at {self.where}"
            ) from None
        except _TRANSPORT as exc:
            raise UnavailableError(
                f"S3 {operation} of {key!r} failed at {self.where}: {_line(exc)}"
            ) from None


def _code(exc: ClientError) -> tuple[str, int]:
    error = exc.response.get("Error", {})
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return str(error.get("Code", "")), int(status)


def _line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:300]
