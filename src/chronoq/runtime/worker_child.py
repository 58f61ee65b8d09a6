"""A worker process of an embedded node (``runtime.worker_processes`` starts it).

``python -m chronoq.runtime.worker_child FD``: FD is this process's end of the socket
pair to its parent, whose first message is ``(settings, slot, parent pid)``. The process
asks to be signalled when its parent dies, then runs the worker role as a node of its
own on the node's SQLite file — hints through the socket, no data-dir lock of its own
(it inherited the parent's), its metrics written to a file the parent merges.
"""

from __future__ import annotations

import pickle
import signal
import socket
import sys

from chronoq.domain.clock import SystemClock
from chronoq.errors import ChronoqError
from chronoq.runtime.hardening import die_with_parent
from chronoq.runtime.node import Node
from chronoq.runtime.process import configure_logging, event_loop_runner
from chronoq.runtime.worker_processes import ChildLink, metrics_file

_SETTINGS_BYTES = 1 << 20


def main(argv: list[str]) -> None:
    parent = socket.socket(fileno=int(argv[0]))
    parent.setblocking(True)
    settings, slot, parent_pid = pickle.loads(parent.recv(_SETTINGS_BYTES))
    die_with_parent(signal.SIGTERM, parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops it (SIGTERM) on Ctrl-C
    configure_logging(settings)
    link = ChildLink(parent, slot, metrics_file(settings.data_dir, slot))
    node = Node(settings, ("worker",), SystemClock(), child=link)
    try:
        event_loop_runner()(node.run())
    except ChronoqError as exc:
        print(f"chronoq: worker process {slot}: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main(sys.argv[1:])
