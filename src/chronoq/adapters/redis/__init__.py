"""Redis adapters: the submission log (``--ingest redis://``) and the run queue
(``--dispatch redis://``), both on Redis Streams with consumer groups.

The factories import their modules only when called, so ``redis`` is needed only when
a Redis backend is chosen.
"""

from __future__ import annotations

import importlib
from typing import Any


def submission_log(url: str) -> Any:
    """``--ingest redis://host:port/db``: a ``RedisSubmissionLog``."""
    module = importlib.import_module("chronoq.adapters.redis.submissions")
    return module.RedisSubmissionLog.from_url(url)


def run_queue(url: str) -> Any:
    """``--dispatch redis://host:port/db``: a ``RedisRunQueue``."""
    module = importlib.import_module("chronoq.adapters.redis.runqueue")
    return module.RedisRunQueue.from_url(url)
