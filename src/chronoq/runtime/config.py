"""Settings: the only place that reads ``CHRONOQ_*`` environment variables.

``Settings`` is frozen and validated; ``Settings.load(environ, overrides)``
layers defaults < environment < explicit overrides (the CLI's flags).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chronoq import failpoints
from chronoq.domain.limits import UserLimits
from chronoq.domain.queues import ClaimLimits, parse_queue_limits, parse_queue_list
from chronoq.domain.retry import DEFAULT_MAX_INTERRUPTIONS
from chronoq.errors import ConfigError, ValidationError

ENV_PREFIX = "CHRONOQ_"


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Every knob of a Chronoq node, with its default."""

    store: str | None = None
    """Store URL: ``postgresql://user@host/db`` (distributed: any number of role processes
    share it) or ``sqlite:///path``; unset = SQLite at ``data_dir/chronoq.db`` (embedded)."""
    blob_dir: Path | None = None
    """Folder for offloaded payloads (over 1 KiB); unset = ``data_dir/blobs``. The processes
    of one cluster must share it (one host, or a shared mount)."""
    node_id: str | None = None
    """This process's member id (heartbeats, leases, shard ownership); unset =
    ``host-pid-random``. A process whose id belongs to a live member is refused at start."""
    ingest: str = "direct"
    """``direct``: the api commits jobs to the store; ``log``: the api appends them to a
    submission log in PostgreSQL and writer processes move them; ``redis://host:port/db``:
    the same with the log in a Redis stream (docs/backends/redis.md). Logs need a
    PostgreSQL store."""
    blob: str = ""
    """Where offloaded payloads and large outputs go: ``s3://bucket/prefix?endpoint=
    http://host:port&region=…`` (credentials from the standard AWS variables and files;
    docs/backends/s3.md); empty = the blob folder (``blob_dir``)."""
    blob_orphan_age: float = 3600.0
    """Seconds after which the leader deletes an offloaded payload whose job never reached
    the store (a crash between upload and insert); must exceed the longest time a job may
    wait in a submission log (0 = never); ≥ 0."""
    dispatch: str = ""
    """How runs reach workers: empty = the store's own run table; ``redis://host:port/db``
    (Redis Streams) or ``sqs://queue?endpoint=…&region=…`` carry run ids, with the store
    still the truth (docs/backends/); ``max_receives=N`` (default 5) deliveries before a
    message is dead-lettered. A queue needs a PostgreSQL store."""
    coordination: str = ""
    """Leadership, membership and shard assignment: empty = the store's (PostgreSQL
    leases, or in-process when embedded); ``etcd://host:port[,host:port…][/prefix]``
    (docs/backends/etcd.md) needs a PostgreSQL store."""
    host: str = "127.0.0.1"
    """Address the HTTP API listens on."""
    port: int = 8080
    """HTTP port of the API, 1–65535."""
    data_dir: Path = field(default_factory=lambda: Path(".chronoq"))
    """Holds ``chronoq.db`` (SQLite), ``blobs/`` (offloaded payloads) and ``chronoq.lock``;
    relative to the working directory; created if missing; one embedded server per
    directory."""
    shell: bool | None = None
    """Allow ``cmd:`` jobs. Unset (auto): on only when ``host`` is a loopback address
    (``127.0.0.0/8``, ``::1``, ``localhost``). The variable takes ``1 true yes on``,
    ``0 false no off`` or ``auto`` (any case)."""
    auth: str = ""
    """How the API knows who calls (docs/auth.md): ``token`` (``Authorization: Bearer``
    tokens made by ``chronoq token create``; ``X-User-ID`` is ignored), ``header``
    (``X-User-ID`` as sent: a loopback listener, or behind a gateway that authenticates
    and sets it), or empty (auto): ``header`` when ``host`` is a loopback address; on any
    other address the api refuses to start until one is chosen."""
    shell_users: str = ""
    """Header mode, off loopback: the users allowed to submit ``cmd:`` jobs,
    comma-separated (token mode: tokens made with ``--allow-shell``). On a loopback
    listener every user may when shell jobs are on."""
    shell_user: str = ""
    """The user ``cmd:`` jobs run as, in a fresh working directory of theirs. Empty: ``nobody``
    when Chronoq runs as root (so a job cannot read the database, the blobs or
    ``/proc/<server>/environ``), else Chronoq's own user (only root can switch). ``root``
    keeps jobs root when Chronoq is root: an explicit choice."""
    echo_delay: float = 0.0
    """Seconds an echo job (a payload with no known prefix) pretends to work (the seed
    slept; 0 = no-op); ≥ 0."""
    worker_concurrency: int = 4096
    """Runs one worker holds at once (claimed ahead or running); ≥ 1."""
    worker_processes: int = 0
    """Embedded (``chronoq up`` on SQLite): run the worker in this many child processes on
    the same database, so a second core executes runs while this one takes submissions
    (0: in this process). 0–8; each child holds ``worker_concurrency`` runs."""
    queues: str = ""
    """The queues whose runs this node's worker claims, comma-separated (empty: every
    queue); each 1–64 characters of ``A-Z a-z 0-9 _ . -`` (docs/queues.md)."""
    queue_limits: str = ""
    """Most RUNNING runs per queue in the whole cluster, ``NAME=N,NAME=N`` (N ≥ 1; a queue
    not named: no limit). Counted in the store at each claim; give every worker the same
    limits (a worker started without them does not hold to them)."""
    user_max_concurrent_runs: int = 0
    """Most RUNNING runs of one user in the whole cluster, counted like ``queue_limits``
    (0 = no limit); ≥ 0."""
    default_timeout: float = 3600.0
    """Timeout in seconds of jobs submitted without ``timeout_seconds``; > 0."""
    retry_base: float = 0.5
    """Backoff ceiling in seconds after the first failed attempt; doubles per attempt; ≥ 0."""
    retry_cap: float = 60.0
    """Largest backoff ceiling in seconds; ≥ 0. A retry waits a uniformly random time in
    ``[0, min(cap, base · 2^(attempt−1))]``."""
    max_body_bytes: int = 1_048_576
    """Largest HTTP request body (413 above); ≥ 1024."""
    output_limit: int = 1_048_576
    """Bytes of a run's output kept (the rest is counted and replaced by a truncation mark);
    ≥ 1024."""
    output_offload_bytes: int = 65536
    """A run output larger than this many UTF-8 bytes is put to the blob store
    (``outputs/<run_id>-<attempt>``) and the run keeps its head and a reference (0 = never;
    otherwise ≥ 1024)."""
    lease_seconds: float = 30.0
    """Length of a run's lease; the worker renews it every third of that, and a run whose
    lease expired is retried (the reaper looks every half lease); ≥ 1."""
    lookahead: float = 0.5
    """Fires due within this many seconds are claimed early and started on a timer at their
    exact time; 0–5."""
    shutdown_grace: float = 10.0
    """At SIGTERM or SIGINT, seconds running jobs get to finish before they are killed and
    handed back; ≥ 0."""
    sqlite_synchronous: str = "FULL"
    """SQLite ``synchronous`` pragma: ``OFF``, ``NORMAL``, ``FULL`` or ``EXTRA`` (any case).
    ``FULL`` makes each commit survive power loss; see ``docs/guarantees.md``."""
    shard_count: int = 256
    """Shards a job id is hashed into (``shard_id``, stored with each job); the leader
    spreads them over the live pickers. Every process of a cluster must use the same
    value; ≥ 1."""
    dispatch_rate: float = 0.0
    """Most fires one picker dispatches per second, so a backlog drains without a
    stampede (0 = no cap). Give api processes the same value: with a cap, an immediate
    job's first fire goes through a picker instead of being claimed at insert."""
    user_max_active_jobs: int = 0
    """Per user: most jobs not completed, failed or cancelled; a submission that would go
    over is refused whole with 429 (docs/limits.md). 0 = unlimited (the default: a limit
    fit for one deployment cannot be guessed, and existing users must keep working)."""
    user_max_fires_per_minute: int = 0
    """Per user: most fires (scheduled and manual, not retries) in any rolling minute; the
    picker holds a user's further due fires until the minute allows them, a manual fire
    over it gets 429 (docs/limits.md). 0 = unlimited (the default). Give api processes the
    same value: with a limit, an immediate job's first fire goes through a picker."""
    leader_ttl: float = 3.0
    """Leader lease length, seconds; renewed every third; a dead leader is replaced within
    ~2 ttl; ≥ 0.5."""
    member_ttl: float = 3.0
    """A picker or worker silent for this many seconds is dead; its shards move; ≥ 0.5."""
    retention_hours: float = 168.0
    """Finished runs and jobs older than this are deleted by the leader (0 = keep
    forever)."""
    idempotency_retention: float = 86400.0
    """Seconds an ``Idempotency-Key`` is kept: within it a replayed submission answers with
    the original job (another body: 409); after it the leader forgets the key and it may
    name a new job (0 = keep keys forever); ≥ 0."""
    metrics_port: int = 0
    """Roles without the api: serve ``/metrics`` and ``/health`` on this port (0 = off)."""
    log_level: str = "info"
    """``debug``, ``info``, ``warning`` or ``error`` (any case); logs go to stderr."""
    failpoints: str = ""
    """Crash on purpose at named steps, for chaos tests (see ``chronoq.failpoints``)."""
    max_interruptions: int = DEFAULT_MAX_INTERRUPTIONS
    """How many times one fire may be cut off mid-run by a lost worker (killed, partitioned,
    stopped past its grace) and still be retried; the next loss makes the run ``DEAD``.
    Interruptions never use the job's own ``max_retries``; ≥ 0."""
    allowed_hosts: str = ""
    """Extra ``Host`` names the API answers, comma-separated (``*``: any), besides the
    loopback names and ``--host``; any other name gets 421, so a web page that rebinds a
    DNS name to this server cannot reach it. Set it to the names clients and load
    balancers use."""
    cursor_key: str = ""
    """Secret that seals list cursors; every api process behind one load balancer needs
    the same. Empty: derived from the store URL in the distributed mode (the processes of
    one cluster share it), random per process in the embedded mode."""

    def __post_init__(self) -> None:
        _check(0 < self.port < 65536, "port must be 1-65535")
        _check(0 <= self.metrics_port < 65536, "metrics_port must be 0-65535")
        _check(
            self.ingest in ("direct", "log") or self.ingest.startswith("redis://"),
            "ingest must be direct, log or a redis:// URL",
        )
        _check(
            self.ingest == "direct" or self.distributed,
            "ingest=log needs a PostgreSQL store (--store postgresql://...)",
        )
        _check(self.blob == "" or self.blob.startswith("s3://"), "blob must be an s3:// URL")
        _check(
            self.dispatch == "" or self.dispatch.startswith(("redis://", "sqs://")),
            "dispatch must be a redis:// or sqs:// URL",
        )
        _check(
            self.coordination == "" or self.coordination.startswith("etcd://"),
            "coordination must be an etcd:// URL",
        )
        for name in ("dispatch", "coordination"):
            _check(
                getattr(self, name) == "" or self.distributed,
                f"{name} {getattr(self, name).split(':')[0]}:// needs a PostgreSQL store"
                " (--store postgresql://...)",
            )
        _check(self.auth in ("", "header", "token"), "auth must be header or token")
        _check(self.leader_ttl >= 0.5, "leader_ttl must be >= 0.5 seconds")
        _check(self.member_ttl >= 0.5, "member_ttl must be >= 0.5 seconds")
        _check(
            self.store is None
            or self.store.startswith(("postgresql://", "postgres://", "sqlite:")),
            "store must be a postgresql:// or sqlite:/// URL",
        )
        _check(self.worker_concurrency >= 1, "worker_concurrency must be >= 1")
        _check(0 <= self.worker_processes <= 8, "worker_processes must be 0..8")
        _check(
            self.worker_processes == 0 or not self.distributed,
            "worker_processes is for the embedded store: on PostgreSQL, start worker"
            " processes with `chronoq worker`",
        )
        self._check_queues()
        _check(self.default_timeout > 0, "default_timeout must be > 0")
        _check(self.retry_base >= 0 and self.retry_cap >= 0, "retry delays must be >= 0")
        _check(self.max_body_bytes >= 1024, "max_body_bytes must be >= 1024")
        _check(self.output_limit >= 1024, "output_limit must be >= 1024")
        _check(
            self.output_offload_bytes == 0 or self.output_offload_bytes >= 1024,
            "output_offload_bytes must be 0 (never) or >= 1024",
        )
        _check(self.lease_seconds >= 1, "lease_seconds must be >= 1")
        _check(0 <= self.lookahead <= 5, "lookahead must be 0-5 seconds")
        _check(self.shutdown_grace >= 0, "shutdown_grace must be >= 0")
        _check(self.retention_hours >= 0, "retention_hours must be >= 0")
        _check(self.idempotency_retention >= 0, "idempotency_retention must be >= 0")
        _check(self.blob_orphan_age >= 0, "blob_orphan_age must be >= 0")
        _check(self.dispatch_rate >= 0, "dispatch_rate must be >= 0 (0 = no cap)")
        _check(self.echo_delay >= 0, "echo_delay must be >= 0")
        _check(self.shard_count >= 1, "shard_count must be >= 1")
        _check(self.max_interruptions >= 0, "max_interruptions must be >= 0")
        _check(self.user_max_active_jobs >= 0, "user_max_active_jobs must be >= 0 (0 = none)")
        _check(
            self.user_max_fires_per_minute >= 0, "user_max_fires_per_minute must be >= 0 (0 = none)"
        )
        _check(
            self.log_level.lower() in {"debug", "info", "warning", "error"},
            "log_level must be debug, info, warning or error",
        )
        try:
            failpoints.parse(self.failpoints)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        for name in _SECONDS:
            _check(math.isfinite(getattr(self, name)), f"{name} must be a finite number")
        _check(
            self.sqlite_synchronous.upper() in {"OFF", "NORMAL", "FULL", "EXTRA"},
            "sqlite_synchronous must be OFF, NORMAL, FULL or EXTRA",
        )

    def _check_queues(self) -> None:
        try:
            parse_queue_list(self.queues)
            parse_queue_limits(self.queue_limits)
        except ValidationError as exc:
            raise ConfigError(f"{exc.field}: {exc}") from None
        _check(
            self.user_max_concurrent_runs >= 0,
            "user_max_concurrent_runs must be >= 0 (0 = no limit)",
        )

    @property
    def worker_queues(self) -> frozenset[str] | None:
        """``queues`` parsed (None: every queue)."""
        return parse_queue_list(self.queues)

    @property
    def claim_limits(self) -> ClaimLimits:
        """``queue_limits`` and ``user_max_concurrent_runs`` as a claim takes them."""
        return ClaimLimits(
            per_queue=parse_queue_limits(self.queue_limits),
            per_user=self.user_max_concurrent_runs,
        )

    @property
    def user_limits(self) -> UserLimits:
        return UserLimits(
            max_active_jobs=self.user_max_active_jobs,
            max_fires_per_minute=self.user_max_fires_per_minute,
        )

    @property
    def distributed(self) -> bool:
        """Whether the store is shared by many processes (PostgreSQL)."""
        return self.store is not None and self.store.startswith(("postgresql:", "postgres:"))

    @property
    def shell_enabled(self) -> bool:
        """``cmd:`` is on when configured so, or by default on a loopback listener only."""
        return self.shell if self.shell is not None else is_loopback(self.host)

    @property
    def auth_mode(self) -> str:
        """``header`` or ``token`` for the api: ``auth``, or ``header`` on a loopback
        ``host``; a ``ConfigError`` on any other address without an explicit choice."""
        if self.auth:
            return self.auth
        if is_loopback(self.host):
            return "header"
        raise ConfigError(
            f"the API would listen on {self.host}, not a loopback address, with nothing"
            " checking who calls: start it with --auth token (bearer tokens, docs/auth.md)"
            " or --auth header (only behind a gateway that authenticates and sets X-User-ID)"
        )

    @classmethod
    def load(
        cls, environ: Mapping[str, str], overrides: Mapping[str, Any] | None = None
    ) -> Settings:
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = environ.get(ENV_PREFIX + f.name.upper())
            if raw is not None and raw != "":
                values[f.name] = _convert(f.name, raw, f.type)
        for name, value in (overrides or {}).items():
            if value is not None:
                values[name] = value
        try:
            return cls(**values)
        except TypeError as exc:
            raise ConfigError(str(exc)) from None


_SECONDS = (
    "echo_delay", "default_timeout", "retry_base", "retry_cap", "lease_seconds", "lookahead",
    "shutdown_grace", "leader_ttl", "member_ttl", "retention_hours", "blob_orphan_age",
    "idempotency_retention",
    "dispatch_rate",
)  # fmt: skip


def env_name(option: str) -> str:
    """The environment variable of a setting, for help texts."""
    return ENV_PREFIX + option.upper()


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _convert(name: str, raw: str, kind: Any) -> Any:
    text = str(kind)
    try:
        if "bool" in text:
            if raw.lower() in {"1", "true", "yes", "on"}:
                return True
            if raw.lower() in {"0", "false", "no", "off"}:
                return False
            if raw.lower() == "auto":
                return None
            raise ValueError(raw)
        if text == "int":
            return int(raw)
        if text == "float":
            return float(raw)
        if text in ("Path", "Path | None"):
            return Path(raw)
        return raw
    except ValueError:
        raise ConfigError(f"{env_name(name)}={raw!r} is not a valid {text}") from None
