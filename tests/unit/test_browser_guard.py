"""The pure parts of the browser guard (issue 7): Host names and JSON content types."""

from __future__ import annotations

import pytest

from chronoq.services.api.browser import LOOPBACK_HOSTS, host_name
from chronoq.services.api.http import UnsupportedMediaType, json_content_type


@pytest.mark.parametrize(
    ("value", "name"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("127.0.0.1:8080", "127.0.0.1"),
        ("LocalHost:80", "localhost"),
        ("[::1]:8080", "::1"),
        ("[::1]", "::1"),
        ("::1", "::1"),
        ("attacker.example:8080", "attacker.example"),
        ("localhost.attacker.example", "localhost.attacker.example"),
    ],
)
def test_host_name(value: str, name: str) -> None:
    assert host_name(value) == name


def test_a_rebound_name_is_not_loopback() -> None:
    for value in ("attacker.example:8080", "127.0.0.1.nip.io", "localhost.", "[::2]:80"):
        assert host_name(value) not in LOOPBACK_HOSTS


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "application/json; charset=utf-8", 'APPLICATION/JSON;charset="UTF8"'],
)
def test_json_is_accepted(content_type: str) -> None:
    json_content_type(content_type, b"{}")


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/json; charset=utf-16",
        "application/json-patch+json",
        "",
    ],
)
def test_anything_else_is_415(content_type: str) -> None:
    with pytest.raises(UnsupportedMediaType):
        json_content_type(content_type, b"{}")


def test_a_body_without_a_content_type_is_415_an_empty_one_passes() -> None:
    with pytest.raises(UnsupportedMediaType):
        json_content_type(None, b"{}")
    json_content_type(None, b"")
