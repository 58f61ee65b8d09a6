"""``--blob s3://...`` refused at start in one line naming the setting: a bad URL, an
unreachable endpoint, no credentials (found fast: the EC2 metadata service is never
probed), a missing bucket with ``create_bucket=false``; and the URL's options parsed."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from chronoq.adapters.s3 import blob_store, parse_s3_url
from chronoq.errors import ConfigError, UnavailableError
from chronoq.runtime.servers.s3 import SeaweedS3Server
from tests.support.processes import chronoq_argv, clean_env, free_port
from tests.support.s3_server import (  # noqa: F401 - fixtures
    S3_ENV,
    aws_env_fixture,
    s3_server_fixture,
    s3_url,
)

BAD_URLS = {
    "s3://Bad_Bucket/p": "invalid bucket name",
    "s3://ab": "invalid bucket name",
    "s3:///prefix": "invalid bucket name",
    "s3://bucket/../up": "prefix",
    "s3://bucket/p?endpoint=ftp://127.0.0.1:1": "endpoint must be http(s)",
    "s3://bucket/p?endpoint=http://127.0.0.1:99999": "bad port",
    "s3://bucket/p?endpoint=http://127.0.0.1:1/path": "endpoint must be http(s)",
    "s3://bucket/p?colour=blue": "unknown option",
    "s3://bucket/p?region=a&region=b": "given twice",
    "s3://bucket/p?read_timeout=0": "read_timeout",
    "s3://bucket/p?connect_timeout=nan": "connect_timeout",
    "s3://bucket/p?max_attempts=11": "max_attempts",
    "s3://bucket/p?max_connections=0": "max_connections must be 1-1000",
    "s3://bucket/p?anonymous=maybe": "anonymous must be true or false",
    "s3://bucket/p?addressing=sideways": "addressing",
    "s3://AKIA:secret@bucket/p": "no credentials in the URL",
}


@pytest.mark.parametrize("url", list(BAD_URLS))
def test_a_bad_url_is_one_config_error_naming_the_setting(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        blob_store(url)
    message = str(caught.value)
    assert message.startswith("blob: ") and BAD_URLS[url] in message, message
    assert "\n" not in message
    assert "secret" not in message  # a URL with credentials is never echoed


def test_options_are_parsed_with_their_defaults() -> None:
    options = parse_s3_url("s3://my-bucket/a/b/?endpoint=http://127.0.0.1:9000/&region=eu-west-3")
    assert (options.bucket, options.prefix, options.endpoint, options.region) == (
        "my-bucket", "a/b", "http://127.0.0.1:9000", "eu-west-3",
    )  # fmt: skip
    assert (options.addressing, options.imds, options.anonymous, options.create_bucket) == (
        "path", False, False, True,
    )  # fmt: skip
    assert (options.connect_timeout, options.read_timeout, options.max_attempts) == (2, 10, 2)
    assert options.max_connections == 64
    custom = parse_s3_url(
        "s3://b-1?anonymous=1&imds=true&create_bucket=no&max_attempts=5"
        "&connect_timeout=0.5&read_timeout=30&addressing=virtual&profile=ops&max_connections=8"
    )
    assert (custom.prefix, custom.endpoint, custom.anonymous, custom.imds) == ("", None, True, True)
    assert (custom.create_bucket, custom.max_attempts, custom.addressing) == (False, 5, "virtual")
    assert (custom.connect_timeout, custom.read_timeout, custom.profile) == (0.5, 30.0, "ops")
    assert custom.max_connections == 8


def _up(
    tmp_path: Path, blob: str, env: dict[str, str]
) -> tuple[subprocess.CompletedProcess[str], float]:
    argv = chronoq_argv("up", "--host", "127.0.0.1", "--port", str(free_port()),
                        "--data-dir", str(tmp_path / "data"), "--blob", blob)  # fmt: skip
    began = time.monotonic()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)  # fmt: skip
    return done, time.monotonic() - began


def _no_aws_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in clean_env().items() if not k.startswith("AWS_")}
    env.update(AWS_CONFIG_FILE="/nonexistent/c", AWS_SHARED_CREDENTIALS_FILE="/nonexistent/s")
    env.update(extra)
    return env


def _last_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode != 0, done
    return done.stderr.strip().splitlines()[-1]


def test_chronoq_up_with_a_bad_blob_url_exits_with_one_line(tmp_path: Path) -> None:
    done, _ = _up(tmp_path, "s3://Bad_Bucket/x", _no_aws_env(**S3_ENV))
    line = _last_line(done)
    assert line.startswith("chronoq: blob: invalid bucket name 'Bad_Bucket'"), done.stderr
    assert "Traceback" not in done.stderr


def test_an_unreachable_endpoint_fails_the_start_fast_in_one_line(tmp_path: Path) -> None:
    url = f"s3://bucket-x/p?endpoint=http://127.0.0.1:{free_port()}&region=us-east-1"
    done, took = _up(tmp_path, url, _no_aws_env(**S3_ENV))
    assert _last_line(done).startswith("chronoq: blob: cannot reach s3://bucket-x/p"), done.stderr
    assert "Traceback" not in done.stderr
    assert took < 15, took


def test_no_credentials_is_one_line_and_never_waits_on_instance_metadata(tmp_path: Path) -> None:
    url = f"s3://bucket-x/p?endpoint=http://127.0.0.1:{free_port()}"
    done, took = _up(tmp_path, url, _no_aws_env())
    assert _last_line(done).startswith("chronoq: blob: no AWS credentials found"), done.stderr
    assert took < 10, took  # probing 169.254.169.254 would add seconds of timeouts


async def test_a_missing_bucket_is_created_unless_told_it_must_exist(
    s3_server: SeaweedS3Server, aws_env: dict[str, str]
) -> None:
    url = s3_url(s3_server, create_bucket="false")
    store = blob_store(url)
    with pytest.raises(ConfigError, match=r"^blob: bucket 't-[0-9a-f]+' does not exist"):
        await store.start()
    created = blob_store(url.replace("create_bucket=false", "create_bucket=true"))
    await created.start()
    try:
        await created.put("payloads/x", b"1")
    finally:
        await created.close()
    await store.start()  # exists now
    assert await store.get("payloads/x") == b"1"
    await store.close()
    with pytest.raises(UnavailableError):
        await store.get("payloads/x")  # closed


async def test_wrong_credentials_are_refused_at_start(
    s3_server: SeaweedS3Server, monkeypatch: pytest.MonkeyPatch, aws_env: dict[str, str]
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    with pytest.raises(ConfigError, match=r"^blob: bucket .* refused \(403"):
        await blob_store(s3_url(s3_server)).start()
