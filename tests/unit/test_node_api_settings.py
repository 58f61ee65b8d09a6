"""How the node turns settings into the API's Host allowlist and cursor key."""

from __future__ import annotations

from chronoq.runtime.config import Settings
from chronoq.runtime.http_serving import api_hosts, cursor_key


def test_hosts_are_the_listen_name_and_the_extra_names() -> None:
    assert api_hosts(Settings()) == {"127.0.0.1"}
    assert api_hosts(Settings(host="sched.internal", shell=False)) == {"sched.internal"}
    extra = Settings(host="0.0.0.0", shell=False, allowed_hosts=" a.example, b.example:8080 ,")
    assert api_hosts(extra) == {"a.example", "b.example:8080"}  # a wildcard is no name


def test_cursor_key_is_set_shared_per_cluster_or_per_process() -> None:
    assert cursor_key(Settings(cursor_key="s3cret")) == b"s3cret"
    a = cursor_key(Settings(store="postgresql://u:p@db:5432/chronoq"))
    b = cursor_key(Settings(store="postgresql://u:p@db:5432/chronoq"))
    other = cursor_key(Settings(store="postgresql://u:p@db:5432/other"))
    assert a is not None and a == b and a != other
    assert b"p@db" not in a  # derived, not the URL (or its password) itself
    assert cursor_key(Settings()) is None  # embedded: one process, a random key
