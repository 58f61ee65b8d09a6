"""A trivial HTTP/1.1 server that answers every request with a canned ``201``.

Used by the ``ceiling`` scenario to measure the load generator's own cost per
request (its ceiling), with no real server work in the way. Run as
``python -m bench.echo_server --port P``.
"""

from __future__ import annotations

import argparse
import asyncio

_BODY = b'{"job_id":"00000000-0000-0000-0000-000000000000","status":"Submitted"}'
_RESPONSE = (
    b"HTTP/1.1 201 Created\r\ncontent-type: application/json\r\n"
    + f"content-length: {len(_BODY)}\r\n\r\n".encode()
    + _BODY
)


class _EchoProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self._buffer = b""
        self._transport: asyncio.WriteTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer + data
        responses = 0
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                break
            head = buffer[:end].lower()
            index = head.find(b"\r\ncontent-length:")
            length = 0
            if index >= 0:
                stop = head.find(b"\r\n", index + 2)
                length = int(head[index + 17 : stop if stop >= 0 else len(head)])
            total = end + 4 + length
            if len(buffer) < total:
                break
            buffer = buffer[total:]
            responses += 1
        self._buffer = buffer
        if responses and self._transport is not None:
            self._transport.write(_RESPONSE * responses)


async def _serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_EchoProtocol, host, port, backlog=1024)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    with runner:
        runner.run(_serve(args.host, args.port))


if __name__ == "__main__":
    main()
