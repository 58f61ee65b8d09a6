"""``SqsConnection``: the one aiobotocore client of an ``SqsRunQueue`` and its named
queues (one connection pool), opened by the first of them to start and closed by the
base's ``close``.

Calls are bounded (5 s to connect, ``OP_TIMEOUT`` + 20 s to answer a long poll, two
attempts). With an ``endpoint`` (a local server) the credential chain never probes EC2
instance metadata, and when no credentials are configured it signs with dummy ones
(moto and ElasticMQ accept any).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

from chronoq.adapters.sqs.url import SqsUrl

OP_TIMEOUT = 10.0


class SqsConnection:
    def __init__(self, config: SqsUrl) -> None:
        self._config = config
        self._lock = asyncio.Lock()
        self._stack: contextlib.AsyncExitStack | None = None
        self.client: Any = None
        """The SQS client while open, else None."""

    async def open(self) -> None:
        """Create the client unless it is open; safe to call twice, also at once."""
        async with self._lock:
            if self.client is None:
                await self._open()

    async def _open(self) -> None:
        session = get_session()
        if self._config.endpoint is not None:
            # A local server: never wait for EC2 instance metadata, and sign with dummy
            # credentials when none are configured (the server checks none).
            session.get_component("credential_provider").remove("iam-role")
            if await session.get_credentials() is None:
                session.set_credentials("chronoq", "chronoq")
        config = AioConfig(
            connect_timeout=5,
            read_timeout=OP_TIMEOUT + 20,
            retries={"max_attempts": 2, "mode": "standard"},
        )
        stack = contextlib.AsyncExitStack()
        client = session.create_client(
            "sqs",
            region_name=self._config.region,
            endpoint_url=self._config.endpoint,
            config=config,
        )
        self.client = await stack.enter_async_context(client)
        self._stack = stack

    async def close(self) -> None:
        stack, self._stack, self.client = self._stack, None, None
        if stack is not None:
            await stack.aclose()
