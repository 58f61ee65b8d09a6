"""``SqsRunQueue``: the RunQueue port on an SQS standard queue (aiobotocore).

``start`` creates the queue ``QUEUE`` and its dead-letter queue ``QUEUE-dead`` and sets
the redrive policy (``maxReceiveCount`` = ``max_receives``): SQS itself moves a message
received that many times to the dead-letter queue on the next receive, and
``drain_dead`` empties it. ``hold`` is the visibility timeout (whole seconds, rounded
up), ``wait`` the long poll (whole seconds, rounded down, at most 20; below 1 s a short
poll), ``deliveries`` is ``ApproximateReceiveCount``; batches of 10 per call.

SQS is not the truth (the store is): a server that lost its queues (moto restarted)
answers ``NonExistentQueue``; every call that meets it creates the queues again and
tries once more, and the dispatch layer re-derives the lost messages from the store.
Unreachable or failing (5xx) server: ``UnavailableError``. Calls are bounded (5 s to
connect, 10 s beyond the long poll to answer, two attempts; ``connection.py``).

``named(q)``: Chronoq queue ``q``'s own SQS queue and dead-letter queue, named as
``url.py`` says (``named(DEFAULT_QUEUE)`` is the URL's queue itself). The named queues
are kept on the base (one object per name) and share its client (``SqsConnection``),
which the base's ``close`` closes: every named queue is closed with it.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from botocore import exceptions as boto_errors

from chronoq.adapters.sqs.connection import OP_TIMEOUT, SqsConnection
from chronoq.adapters.sqs.url import SETTING, SqsUrl, parse_sqs_url
from chronoq.errors import ConfigError, UnavailableError, ValidationError
from chronoq.ports.runqueue import Delivery, check_receive, memoized_named

T = TypeVar("T")

BATCH = 10
"""SQS's limit per batch call and per receive."""
_GONE = {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"}
_TRANSPORT = (boto_errors.ConnectionError, boto_errors.HTTPClientError, OSError, TimeoutError)


def _chunks(items: Sequence[T]) -> list[Sequence[T]]:
    return [items[i : i + BATCH] for i in range(0, len(items), BATCH)]


def _check_hold(hold: float) -> int:
    if not (0 <= hold <= 43200):
        raise ValidationError(f"hold must be 0-43200 seconds, got {hold!r}", field="hold")
    return math.ceil(hold)


class SqsRunQueue:
    """The run queue on SQS (see the module docstring)."""

    def __init__(self, config: SqsUrl, *, _base: SqsRunQueue | None = None) -> None:
        self._config = config
        self._where = config.endpoint or f"SQS {config.region}"
        self._base = self if _base is None else _base
        self._connection: SqsConnection = (
            SqsConnection(config) if _base is None else _base._connection
        )
        self._named: dict[str, SqsRunQueue] = {}
        """The named queues (on the base only)."""
        self._started = False
        self._url = ""
        self._dead_url = ""

    @classmethod
    def from_url(cls, url: str) -> SqsRunQueue:
        return cls(parse_sqs_url(url))

    def named(self, queue: str) -> SqsRunQueue:
        base = self._base
        config = base._config
        return memoized_named(
            base, base._named, queue, lambda: SqsRunQueue(config.named(queue), _base=base)
        )

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        await self._connection.open()
        self._started = True
        await self._call(self._create_queues, retry=False)

    async def close(self) -> None:
        self._started = False
        if self._base is self:
            for queue in self._named.values():
                await queue.close()
            await self._connection.close()

    def _sqs(self) -> Any:
        client = self._connection.client
        if not self._started or client is None:
            raise UnavailableError(f"{SETTING}: the SQS run queue is not started (or closed)")
        return client

    async def _create_queues(self) -> None:
        sqs = self._sqs()
        dead = await sqs.create_queue(QueueName=self._config.dead_queue)
        attributes = await sqs.get_queue_attributes(
            QueueUrl=dead["QueueUrl"], AttributeNames=["QueueArn"]
        )
        main = await sqs.create_queue(QueueName=self._config.queue)
        policy = {
            "deadLetterTargetArn": attributes["Attributes"]["QueueArn"],
            "maxReceiveCount": str(self._config.max_receives),
        }
        await sqs.set_queue_attributes(
            QueueUrl=main["QueueUrl"], Attributes={"RedrivePolicy": json.dumps(policy)}
        )
        self._url, self._dead_url = main["QueueUrl"], dead["QueueUrl"]

    async def _call(
        self, op: Callable[[], Awaitable[T]], *, extra: float = 0.0, retry: bool = True
    ) -> T:
        """Run ``op`` within a deadline; create the queues again once if the server lost
        them; transport trouble and 5xx answers are ``UnavailableError``."""
        for attempt in (1, 2):
            try:
                async with asyncio.timeout(OP_TIMEOUT * 2 + extra):
                    return await op()
            except boto_errors.ClientError as exc:
                error = exc.response.get("Error", {})
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
                if error.get("Code") in _GONE and retry and attempt == 1:
                    await self._call(self._create_queues, retry=False)
                    continue
                if status >= 500 or error.get("Code") in _GONE:
                    raise UnavailableError(f"{SETTING}: SQS at {self._where}: {exc}") from None
                raise
            except boto_errors.NoCredentialsError:
                raise ConfigError(f"{SETTING}: no AWS credentials for {self._where}") from None
            except _TRANSPORT as exc:
                raise UnavailableError(
                    f"{SETTING}: SQS at {self._where} is unavailable: {exc or type(exc).__name__}"
                ) from None
        raise AssertionError("unreachable")

    # -- the port ----------------------------------------------------------------------------

    async def send(self, run_ids: Sequence[str]) -> None:
        for chunk in _chunks(run_ids):
            await self._send(chunk)

    async def _send(self, run_ids: Sequence[str]) -> None:
        entries = [{"Id": str(i), "MessageBody": run_id} for i, run_id in enumerate(run_ids)]
        reply = await self._call(
            lambda: self._sqs().send_message_batch(QueueUrl=self._url, Entries=entries)
        )
        failed = {entry["Id"] for entry in reply.get("Failed", [])}
        if failed:  # retry those once (throttling, a transient error), then give up loudly
            again = [entry for entry in entries if entry["Id"] in failed]
            reply = await self._call(
                lambda: self._sqs().send_message_batch(QueueUrl=self._url, Entries=again)
            )
            if reply.get("Failed"):
                raise UnavailableError(f"{SETTING}: SQS refused messages: {reply['Failed'][0]}")

    async def receive(
        self, consumer: str, limit: int, *, wait: float, hold: float
    ) -> list[Delivery]:
        check_receive(consumer, limit, hold)
        visibility = _check_hold(hold)
        seconds = min(20, math.floor(max(0.0, wait)))
        taken: list[Delivery] = []
        while len(taken) < limit:
            count = min(BATCH, limit - len(taken))
            poll = 0 if taken else seconds  # only the first call waits
            reply = await self._call(
                lambda c=count, p=poll: self._sqs().receive_message(  # type: ignore[misc]
                    QueueUrl=self._url,
                    MaxNumberOfMessages=c,
                    WaitTimeSeconds=p,
                    VisibilityTimeout=visibility,
                    AttributeNames=["ApproximateReceiveCount"],
                ),
                extra=poll,
            )
            messages = reply.get("Messages", [])
            taken += [
                Delivery(
                    run_id=m["Body"],
                    receipt=m["ReceiptHandle"],
                    deliveries=int(m["Attributes"]["ApproximateReceiveCount"]),
                )
                for m in messages
            ]
            if len(messages) < count:
                break
        return taken

    async def extend(self, receipts: Sequence[str], hold: float) -> None:
        visibility = _check_hold(hold)
        for chunk in _chunks(receipts):
            entries = [
                {"Id": str(i), "ReceiptHandle": r, "VisibilityTimeout": visibility}
                for i, r in enumerate(chunk)
            ]
            # Failed entries are receipts no longer valid (acked, expired): ignored.
            await self._call(
                lambda e=entries: self._sqs().change_message_visibility_batch(  # type: ignore[misc]
                    QueueUrl=self._url, Entries=e
                )
            )

    async def ack(self, receipts: Sequence[str]) -> None:
        await self._delete(self._url_of_main, receipts)

    def _url_of_main(self) -> str:
        return self._url

    async def _delete(self, url: Callable[[], str], receipts: Sequence[str]) -> None:
        for chunk in _chunks(receipts):
            entries = [{"Id": str(i), "ReceiptHandle": r} for i, r in enumerate(chunk)]
            # Failed entries are unknown receipts: fine (the contract allows them).
            await self._call(
                lambda e=entries: self._sqs().delete_message_batch(  # type: ignore[misc]
                    QueueUrl=url(), Entries=e
                )
            )

    async def drain_dead(self, limit: int) -> list[str]:
        runs: list[str] = []
        while len(runs) < limit:
            count = min(BATCH, limit - len(runs))
            reply = await self._call(
                lambda c=count: self._sqs().receive_message(  # type: ignore[misc]
                    QueueUrl=self._dead_url,
                    MaxNumberOfMessages=c,
                    WaitTimeSeconds=0,
                    VisibilityTimeout=30,
                )
            )
            messages = reply.get("Messages", [])
            await self._delete(lambda: self._dead_url, [m["ReceiptHandle"] for m in messages])
            runs += [m["Body"] for m in messages]
            if len(messages) < count:
                break
        return runs

    async def depth(self) -> int:
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        reply = await self._call(
            lambda: self._sqs().get_queue_attributes(QueueUrl=self._url, AttributeNames=names)
        )
        return sum(int(reply["Attributes"].get(name, 0)) for name in names)
