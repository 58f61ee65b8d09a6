"""etcd adapters: ``--coordination etcd://host:port[,host:port...][/prefix]``.

Leadership, membership and shard assignment on etcd leases and transactions, through
etcd's v3 JSON gateway (``httpx``, already a dependency: no gRPC). See
``chronoq.adapters.etcd.etcd_coordination`` for the key layout and docs/backends/etcd.md.
"""

from __future__ import annotations

from chronoq.adapters.etcd.client import EtcdUrl, parse_etcd_url
from chronoq.adapters.etcd.etcd_coordination import EtcdCoordination

__all__ = ["EtcdCoordination", "EtcdUrl", "coordination", "parse_etcd_url"]


def coordination(url: str) -> EtcdCoordination:
    """``--coordination etcd://...``: an ``EtcdCoordination`` (not connected until
    ``start``). A bad URL is a one-line ConfigError naming ``coordination``."""
    return EtcdCoordination(parse_etcd_url(url))
