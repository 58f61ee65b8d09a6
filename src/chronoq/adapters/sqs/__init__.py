"""SQS adapter: the run queue (``--dispatch sqs://…``) on Amazon SQS or any server that
speaks its API (moto's server in tests).

The factory imports its module only when called, so ``aiobotocore`` is needed only when
SQS is chosen.
"""

from __future__ import annotations

import importlib
from typing import Any


def run_queue(url: str) -> Any:
    """``--dispatch sqs://queue?endpoint=…&region=…&max_receives=N``: an ``SqsRunQueue``."""
    module = importlib.import_module("chronoq.adapters.sqs.runqueue")
    return module.SqsRunQueue.from_url(url)
