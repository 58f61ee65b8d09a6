"""Between the processes of one embedded node (``chronoq up --worker-processes``)."""

from chronoq.adapters.ipc.notify import IpcNotifier

__all__ = ["IpcNotifier"]
