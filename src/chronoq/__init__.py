"""Chronoq: a distributed job scheduler.

Immediate, scheduled and recurring jobs (cron with seconds, ``@every``), shell
jobs, payload offload, retries and timeouts; one process on a laptop, the same
roles across many hosts.
"""

from chronoq.client import Client

__all__ = ["Client", "__version__"]
__version__ = "0.1.0"
