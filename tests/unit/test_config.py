"""Settings: defaults < environment < overrides, validation, and the shell default."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from chronoq.domain.retry import DEFAULT_MAX_INTERRUPTIONS
from chronoq.errors import ConfigError
from chronoq.runtime.config import Settings, env_name, is_loopback

DEFAULTS: dict[str, Any] = {
    "store": None,
    "blob_dir": None,
    "node_id": None,
    "ingest": "direct",
    "blob": "",
    "blob_orphan_age": 3600.0,
    "dispatch": "",
    "coordination": "",
    "host": "127.0.0.1",
    "port": 8080,
    "data_dir": Path(".chronoq"),
    "shell": None,
    "auth": "",
    "shell_users": "",
    "shell_user": "",
    "echo_delay": 0.0,
    "worker_concurrency": 4096,
    "worker_processes": 0,
    "queues": "",
    "queue_limits": "",
    "user_max_concurrent_runs": 0,
    "default_timeout": 3600.0,
    "retry_base": 0.5,
    "retry_cap": 60.0,
    "max_body_bytes": 1_048_576,
    "output_limit": 1_048_576,
    "output_offload_bytes": 65536,
    "lease_seconds": 30.0,
    "lookahead": 0.5,
    "shutdown_grace": 10.0,
    "sqlite_synchronous": "FULL",
    "shard_count": 256,
    "dispatch_rate": 0.0,
    "user_max_active_jobs": 0,
    "user_max_fires_per_minute": 0,
    "leader_ttl": 3.0,
    "member_ttl": 3.0,
    "retention_hours": 168.0,
    "idempotency_retention": 86400.0,
    "metrics_port": 0,
    "log_level": "info",
    "failpoints": "",
    "max_interruptions": 3,
    "allowed_hosts": "",
    "cursor_key": "",
}


def test_defaults() -> None:
    settings = Settings()
    assert {f.name: getattr(settings, f.name) for f in dataclasses.fields(Settings)} == DEFAULTS
    assert Settings.load({}) == settings


def test_settings_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Settings().port = 1  # type: ignore[misc]


def test_env_name() -> None:
    assert env_name("port") == "CHRONOQ_PORT"
    assert env_name("worker_concurrency") == "CHRONOQ_WORKER_CONCURRENCY"


def test_every_setting_is_read_from_its_variable() -> None:
    environ = {
        "CHRONOQ_HOST": "0.0.0.0",
        "CHRONOQ_PORT": "9000",
        "CHRONOQ_DATA_DIR": "/tmp/chronoq-data",
        "CHRONOQ_SHELL": "true",
        "CHRONOQ_SHELL_USER": "nobody",
        "CHRONOQ_AUTH": "token",
        "CHRONOQ_SHELL_USERS": "alice,bob",
        "CHRONOQ_ECHO_DELAY": "0.25",
        "CHRONOQ_WORKER_CONCURRENCY": "16",
        "CHRONOQ_WORKER_PROCESSES": "0",  # embedded only: read in the test below
        "CHRONOQ_DEFAULT_TIMEOUT": "60",
        "CHRONOQ_RETRY_BASE": "1",
        "CHRONOQ_RETRY_CAP": "30",
        "CHRONOQ_MAX_BODY_BYTES": "4096",
        "CHRONOQ_OUTPUT_LIMIT": "2048",
        "CHRONOQ_OUTPUT_OFFLOAD_BYTES": "8192",
        "CHRONOQ_LEASE_SECONDS": "5",
        "CHRONOQ_LOOKAHEAD": "0",
        "CHRONOQ_SHUTDOWN_GRACE": "0",
        "CHRONOQ_SQLITE_SYNCHRONOUS": "normal",
        "CHRONOQ_SHARD_COUNT": "16",
        "CHRONOQ_LOG_LEVEL": "debug",
        "CHRONOQ_STORE": "postgresql://db.example/chronoq",
        "CHRONOQ_BLOB_DIR": "/srv/blobs",
        "CHRONOQ_NODE_ID": "node-7",
        "CHRONOQ_LEADER_TTL": "2",
        "CHRONOQ_MEMBER_TTL": "4",
        "CHRONOQ_RETENTION_HOURS": "24",
        "CHRONOQ_IDEMPOTENCY_RETENTION": "3600",
        "CHRONOQ_METRICS_PORT": "9100",
        "CHRONOQ_FAILPOINTS": "after_claim=kill@5",
        "CHRONOQ_DISPATCH_RATE": "500",
        "CHRONOQ_INGEST": "log",
        "CHRONOQ_MAX_INTERRUPTIONS": "0",
        "CHRONOQ_ALLOWED_HOSTS": "sched.example",
        "CHRONOQ_CURSOR_KEY": "k",
        "CHRONOQ_BLOB": "s3://bucket/p?endpoint=http://127.0.0.1:1",
        "CHRONOQ_BLOB_ORPHAN_AGE": "120",
        "CHRONOQ_DISPATCH": "redis://127.0.0.1:1/0",
        "CHRONOQ_COORDINATION": "etcd://127.0.0.1:1",
        "CHRONOQ_QUEUES": "fast,reports",
        "CHRONOQ_QUEUE_LIMITS": "reports=2",
        "CHRONOQ_USER_MAX_CONCURRENT_RUNS": "4",
        "CHRONOQ_USER_MAX_ACTIVE_JOBS": "1000",
        "CHRONOQ_USER_MAX_FIRES_PER_MINUTE": "600",
    }
    assert set(environ) == {env_name(f.name) for f in dataclasses.fields(Settings)}
    s = Settings.load(environ)
    assert s.host == "0.0.0.0"
    assert s.port == 9000
    assert s.data_dir == Path("/tmp/chronoq-data")
    assert s.shell is True
    assert s.shell_user == "nobody"
    assert (s.auth, s.auth_mode, s.shell_users) == ("token", "token", "alice,bob")
    assert s.echo_delay == 0.25
    assert s.worker_concurrency == 16
    assert s.default_timeout == 60.0
    assert (s.retry_base, s.retry_cap) == (1.0, 30.0)
    assert (s.max_body_bytes, s.output_limit) == (4096, 2048)
    assert s.output_offload_bytes == 8192
    assert (s.lease_seconds, s.lookahead, s.shutdown_grace) == (5.0, 0.0, 0.0)
    assert s.sqlite_synchronous == "normal"
    assert s.shard_count == 16
    assert s.log_level == "debug"
    assert s.store == "postgresql://db.example/chronoq" and s.distributed
    assert (s.blob_dir, s.node_id) == (Path("/srv/blobs"), "node-7")
    assert (s.leader_ttl, s.member_ttl, s.retention_hours) == (2.0, 4.0, 24.0)
    assert s.idempotency_retention == 3600.0
    assert (s.metrics_port, s.failpoints) == (9100, "after_claim=kill@5")
    assert s.dispatch_rate == 500.0
    assert s.ingest == "log"
    assert s.max_interruptions == 0
    assert (s.allowed_hosts, s.cursor_key) == ("sched.example", "k")
    assert s.blob == "s3://bucket/p?endpoint=http://127.0.0.1:1"
    assert (s.dispatch, s.coordination) == ("redis://127.0.0.1:1/0", "etcd://127.0.0.1:1")
    assert (s.user_max_active_jobs, s.user_max_fires_per_minute) == (1000, 600)
    assert (s.queues, s.queue_limits, s.user_max_concurrent_runs) == (
        "fast,reports",
        "reports=2",
        4,
    )


def test_worker_processes_is_read_from_its_variable() -> None:
    assert Settings.load({"CHRONOQ_WORKER_PROCESSES": "2"}, {}).worker_processes == 2


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"blob": "http://bucket"}, "blob must be an s3:// URL"),
        ({"dispatch": "amqp://x", "store": "postgresql://h/d"}, "dispatch must be a redis://"),
        ({"dispatch": "redis://h"}, "dispatch redis:// needs a PostgreSQL store"),
        ({"coordination": "zk://h", "store": "postgresql://h/d"}, "coordination must be an etcd"),
        ({"coordination": "etcd://h"}, "coordination etcd:// needs a PostgreSQL store"),
        ({"ingest": "kafka://h", "store": "postgresql://h/d"}, "ingest must be direct, log or"),
        ({"ingest": "redis://h"}, "ingest=log needs a PostgreSQL store"),
        ({"worker_processes": 1, "store": "postgresql://h/d"}, "start worker processes with"),
        ({"worker_processes": 9}, "worker_processes must be 0..8"),
        ({"worker_processes": -1}, "worker_processes must be 0..8"),
    ],
)
def test_backend_urls_are_checked(overrides: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings(**overrides)  # type: ignore[arg-type]


def test_port_from_env() -> None:
    settings = Settings.load({"CHRONOQ_PORT": "9000"})
    assert settings.port == 9000
    assert isinstance(settings.port, int)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("true", True),
        ("TRUE", True),
        ("1", True),
        ("yes", True),
        ("on", True),
        ("false", False),
        ("False", False),
        ("0", False),
        ("no", False),
        ("off", False),
        ("auto", None),
        ("AUTO", None),
    ],
)
def test_shell_from_env(raw: str, expected: bool | None) -> None:
    assert Settings.load({"CHRONOQ_SHELL": raw}).shell is expected


def test_empty_variables_are_ignored() -> None:
    assert Settings.load({"CHRONOQ_PORT": "", "CHRONOQ_SHELL": ""}) == Settings()


def test_other_variables_are_ignored() -> None:
    assert Settings.load({"PORT": "1", "CHRONOQ_NOPE": "x", "chronoq_port": "1"}) == Settings()


def test_overrides_beat_env() -> None:
    environ = {"CHRONOQ_PORT": "9000", "CHRONOQ_HOST": "0.0.0.0", "CHRONOQ_SHELL": "true"}
    s = Settings.load(environ, {"port": 9100, "shell": False})
    assert s.port == 9100
    assert s.shell is False
    assert s.host == "0.0.0.0"  # not overridden: the environment's


def test_none_overrides_leave_env_alone() -> None:
    """The CLI passes every flag, None when not given: None must not reset a variable."""
    s = Settings.load({"CHRONOQ_PORT": "9000"}, {"port": None, "host": None, "shell": None})
    assert s.port == 9000


@pytest.mark.parametrize(
    ("variable", "raw"),
    [
        ("CHRONOQ_PORT", "abc"),
        ("CHRONOQ_PORT", "90.5"),
        ("CHRONOQ_SHELL", "maybe"),
        ("CHRONOQ_LEASE_SECONDS", "soon"),
        ("CHRONOQ_WORKER_CONCURRENCY", "1e3"),
    ],
)
def test_unparsable_values_name_the_variable(variable: str, raw: str) -> None:
    with pytest.raises(ConfigError, match=variable) as info:
        Settings.load({variable: raw})
    assert repr(raw) in str(info.value)


@pytest.mark.parametrize(
    ("variable", "raw", "setting"),
    [
        ("CHRONOQ_PORT", "0", "port"),
        ("CHRONOQ_PORT", "65536", "port"),
        ("CHRONOQ_WORKER_CONCURRENCY", "0", "worker_concurrency"),
        ("CHRONOQ_DEFAULT_TIMEOUT", "0", "default_timeout"),
        ("CHRONOQ_DEFAULT_TIMEOUT", "nan", "default_timeout"),
        ("CHRONOQ_RETRY_BASE", "-1", "retry"),
        ("CHRONOQ_RETRY_CAP", "-1", "retry"),
        ("CHRONOQ_MAX_BODY_BYTES", "1023", "max_body_bytes"),
        ("CHRONOQ_OUTPUT_LIMIT", "10", "output_limit"),
        ("CHRONOQ_OUTPUT_OFFLOAD_BYTES", "1023", "output_offload_bytes"),
        ("CHRONOQ_OUTPUT_OFFLOAD_BYTES", "-1", "output_offload_bytes"),
        ("CHRONOQ_LEASE_SECONDS", "0.5", "lease_seconds"),
        ("CHRONOQ_LOOKAHEAD", "5.1", "lookahead"),
        ("CHRONOQ_LOOKAHEAD", "-0.1", "lookahead"),
        ("CHRONOQ_SHUTDOWN_GRACE", "-1", "shutdown_grace"),
        ("CHRONOQ_ECHO_DELAY", "-1", "echo_delay"),
        ("CHRONOQ_SHARD_COUNT", "0", "shard_count"),
        ("CHRONOQ_SQLITE_SYNCHRONOUS", "sometimes", "sqlite_synchronous"),
        ("CHRONOQ_MAX_INTERRUPTIONS", "-1", "max_interruptions"),
        ("CHRONOQ_QUEUES", "a,b c", "queues"),
        ("CHRONOQ_QUEUE_LIMITS", "gpu=0", "queue_limits"),
        ("CHRONOQ_QUEUE_LIMITS", "gpu", "queue_limits"),
        ("CHRONOQ_USER_MAX_CONCURRENT_RUNS", "-1", "user_max_concurrent_runs"),
    ],
)
def test_out_of_range_values_name_the_setting(variable: str, raw: str, setting: str) -> None:
    with pytest.raises(ConfigError, match=setting):
        Settings.load({variable: raw})


def test_max_interruptions_defaults_to_the_domain_budget_and_parses_as_an_int() -> None:
    assert Settings().max_interruptions == DEFAULT_MAX_INTERRUPTIONS
    assert Settings.load({"CHRONOQ_MAX_INTERRUPTIONS": "7"}).max_interruptions == 7
    with pytest.raises(ConfigError, match="CHRONOQ_MAX_INTERRUPTIONS"):
        Settings.load({"CHRONOQ_MAX_INTERRUPTIONS": "1.5"})


def test_out_of_range_overrides_are_refused_too() -> None:
    with pytest.raises(ConfigError, match="port"):
        Settings.load({}, {"port": 70000})


def test_unknown_override_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="no_such_setting"):
        Settings.load({}, {"no_such_setting": 1})


def test_unknown_log_level_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="log_level"):
        Settings.load({"CHRONOQ_LOG_LEVEL": "verbose"})


@pytest.mark.parametrize("level", ["debug", "info", "warning", "error", "DEBUG", "Warning"])
def test_known_log_levels_are_accepted(level: str) -> None:
    assert Settings.load({"CHRONOQ_LOG_LEVEL": level}).log_level == level


SECONDS = [
    "blob_orphan_age",
    "echo_delay",
    "default_timeout",
    "retry_base",
    "retry_cap",
    "lease_seconds",
    "lookahead",
    "shutdown_grace",
    "leader_ttl",
    "member_ttl",
    "retention_hours",
    "dispatch_rate",
    "idempotency_retention",
]


@pytest.mark.parametrize("name", SECONDS)
@pytest.mark.parametrize("raw", ["inf", "Infinity", "nan", "-inf"])
def test_non_finite_seconds_are_config_errors(name: str, raw: str) -> None:
    """``inf`` once passed ``>= 1``: a lease of inf seconds made every claim overflow."""
    with pytest.raises(ConfigError, match=name.split("_")[0]):  # "retry delays must be >= 0"
        Settings.load({env_name(name): raw})


def test_every_float_setting_is_checked_for_finiteness() -> None:
    floats = {f.name for f in dataclasses.fields(Settings) if f.type == "float"}
    assert floats == set(SECONDS)


# -- the shell default (DESIGN §8) ------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_shell_on_by_default_on_loopback(host: str) -> None:
    assert is_loopback(host)
    assert Settings(host=host).shell_enabled is True


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "example.com", ""])
def test_shell_off_by_default_elsewhere(host: str) -> None:
    assert not is_loopback(host)
    assert Settings(host=host).shell_enabled is False


def test_shell_configured_on_a_public_listener() -> None:
    assert Settings(host="0.0.0.0", shell=True).shell_enabled is True
    assert Settings.load({"CHRONOQ_HOST": "0.0.0.0", "CHRONOQ_SHELL": "true"}).shell_enabled


def test_shell_configured_off_on_loopback() -> None:
    assert Settings(host="127.0.0.1", shell=False).shell_enabled is False


def test_shell_auto_follows_the_host() -> None:
    assert (
        Settings.load({"CHRONOQ_SHELL": "auto", "CHRONOQ_HOST": "0.0.0.0"}).shell_enabled is False
    )
    assert Settings.load({"CHRONOQ_SHELL": "auto"}).shell_enabled is True


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_auth_defaults_to_header_on_loopback(host: str) -> None:
    assert Settings(host=host).auth_mode == "header"


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "sched.example"])
def test_auth_must_be_chosen_off_loopback(host: str) -> None:
    with pytest.raises(ConfigError, match="--auth token") as refused:
        Settings(host=host).auth_mode  # noqa: B018 - the property raises
    assert "\n" not in str(refused.value)  # one line
    assert Settings(host=host, auth="header").auth_mode == "header"
    assert Settings(host=host, auth="token").auth_mode == "token"


def test_unknown_auth_mode_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="auth must be header or token"):
        Settings.load({"CHRONOQ_AUTH": "basic"})


def test_user_limits_from_the_environment_and_refused_below_zero() -> None:
    settings = Settings.load(
        {env_name("user_max_active_jobs"): "100", env_name("user_max_fires_per_minute"): "60"}
    )
    assert settings.user_limits.max_active_jobs == 100
    assert settings.user_limits.max_fires_per_minute == 60
    for name in ("user_max_active_jobs", "user_max_fires_per_minute"):
        with pytest.raises(ConfigError, match=name):
            Settings.load({env_name(name): "-1"})
        with pytest.raises(ConfigError, match=env_name(name)):
            Settings.load({env_name(name): "1.5"})
