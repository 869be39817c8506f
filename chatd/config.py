"""Settings: one frozen dataclass per chatd.toml section, validated at load.

Every limit the daemon enforces is a field here with its default; chatd.toml repeats
them with a comment each. Loading rejects unknown keys, wrong types and bad values with a
`ConfigError` naming the key, so a typo stops start-up instead of being ignored.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A setting is unknown, of the wrong type or out of range; the message names the key."""


@dataclass(frozen=True, slots=True)
class ServerSection:
    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: str = "data"
    timezone: str = ""  # IANA name; empty means the system's zone
    uvloop: bool = True
    shutdown_timeout_s: float = 5.0
    # Balancers whose connections start with a PROXY protocol header (v1 or v2) naming
    # the client (HAProxy's send-proxy; plain doors only, not TLS): CIDR networks.
    proxy_protocol_from: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ChatSection:
    history_on_join: int = 20
    max_sessions_per_user: int = 8
    history_max: int = 200
    # Memory for the newest messages whole (core/index.py RecentWindow); older ones are
    # read from the store. Replay after a login is sent in pages of `replay_page`.
    recent_bytes: int = 4194304
    replay_page: int = 200
    # What "received" means for the read position saved at logout (docs/limits.md):
    # "written" (the protocol's: handed to the kernel) or "acknowledged" (the client's
    # TCP acknowledged it; plain TCP and telnet sessions).
    received: str = "written"


@dataclass(frozen=True, slots=True)
class LimitsSection:
    max_line_bytes: int = 4096
    general_messages_per_window: int = 20
    general_window_s: float = 3600.0
    login_timeout_s: float = 60.0
    max_connections: int = 10000
    max_connections_per_ip: int = 16
    send_buffer_bytes: int = 1048576
    flood_burst: int = 500  # commands at once, then flood_rate_per_s (docs/limits.md)
    flood_rate_per_s: float = 1000.0
    login_failures_before_throttle: int = 5
    login_throttle_s: float = 3.0
    login_failures_forget_s: float = 900.0
    # Per-user fixed windows (chatd/core/flood.py RateWindow; 0 = no limit), docs/limits.md.
    private_messages_per_window: int = 1000  # private messages (incl. comments and files)
    private_window_s: float = 60.0
    room_messages_per_window: int = 1000  # messages to rooms (incl. comments and files)
    room_window_s: float = 60.0
    rooms_created_per_window: int = 10
    rooms_created_window_s: float = 3600.0
    invites_per_window: int = 100  # room invite, by the inviting owner
    invites_window_s: float = 3600.0
    join_links_per_window: int = 20  # room link, by the owner
    join_links_window_s: float = 3600.0
    join_requests_per_window: int = 20  # join <link>, by the asking user
    join_requests_window_s: float = 3600.0
    # New accounts per address (IPv6 per /64); loopback is exempt by default (a reverse
    # proxy, the local bench and test suites all come from there).
    accounts_per_address_per_window: int = 20
    accounts_window_s: float = 3600.0
    accounts_exempt_networks: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    # Bounds on what can be stored (0 = no bound), docs/limits.md; over one: too-large.
    max_rooms_per_user: int = 100  # rooms one user owns
    max_rooms: int = 100000  # rooms on the server
    max_links_per_room: int = 20  # live (unexpired) join links of a room
    max_join_requests_per_room: int = 100  # pending join requests of a room
    max_uploads_per_user: int = 4  # uploads in progress at once (all sessions)
    upload_reserve_s: float = 1800.0  # an unfinished upload counts against the quota this long
    upload_idle_s: float = 300.0  # an upload whose data stops this long is dropped, closed
    schedules_per_tick: int = 100  # scheduled messages fired per loop turn; the rest next turn


@dataclass(frozen=True, slots=True)
class ModerationSection:
    strikes_to_ban: int = 3
    ban_duration_s: float = 14400.0
    strike_window_s: float = 86400.0
    admins: tuple[str, ...] = ()
    # New accounts may not take these names or names confusable with them (names in
    # `admins` excepted: the operator provisions those).
    reserved_names: tuple[str, ...] = ("general", "chatd", "server", "admin", "root")
    # A complaint counts only from an account at least this old (0: any account).
    complaint_min_account_age_s: float = 0.0
    # ... and only from one that has sent at least this many messages (0: any account).
    complaint_min_messages: int = 0
    # Admins are provisioned, not claimed: a name in `admins` cannot be created by a
    # `login`; `chatd admin add NAME` creates it with the operator's password.
    provisioned_admins: bool = False


@dataclass(frozen=True, slots=True)
class RetentionSection:
    delivered_ttl_s: float = 3600.0
    max_age_s: float = 604800.0
    sweep_interval_s: float = 60.0
    general_recipient_idle_s: float = 604800.0


@dataclass(frozen=True, slots=True)
class FilesSection:
    max_bytes: int = 5242880
    quota_bytes: int = 52428800
    # Where file bodies are kept; empty: server.data_dir/files. Several nodes: one
    # directory they all mount (docs/cluster.md).
    dir: str = ""


@dataclass(frozen=True, slots=True)
class RoomsSection:
    link_ttl_s: float = 86400.0
    # Invitations need consent (docs/conversations.md): true makes `room invite` a pending
    # offer the invitee answers with `room accept|decline`; false (the protocol's) adds
    # the member at once.
    invite_consent: bool = False
    invite_ttl_s: float = 604800.0  # a pending invitation expires after this (7 days)
    max_invites_per_room: int = 100  # pending invitations of one room (0 = no bound)
    max_invites_per_user: int = 20  # pending invitations waiting for one user (0 = no bound)


@dataclass(frozen=True, slots=True)
class ScheduleSection:
    horizon_s: float = 2592000.0
    max_pending_per_user: int = 100


@dataclass(frozen=True, slots=True)
class AuthSection:
    require_password: bool = False


@dataclass(frozen=True, slots=True)
class StoreSection:
    synchronous: str = "full"  # "full": fsync per group commit; "normal": survives kill -9 only
    # A batch that cannot be committed this long (disk full): its messages are refused
    # with `unavailable`; until a commit succeeds again, writes are refused at once.
    commit_timeout_s: float = 5.0
    commit_retry_s: float = 1.0  # how often a failing commit is tried again
    # Where the state lives (docs/cluster.md): "sqlite" (a file in server.data_dir, no
    # setup) or "postgres" (the database at `dsn`; create its schema with `chatd migrate`).
    backend: str = "sqlite"
    dsn: str = ""  # libpq connection string or URI, e.g. "postgresql://chatd@db/chatd"
    connect_timeout_s: float = 5.0  # PostgreSQL: connecting, and `chatd check-config`


def _host_name() -> str:
    """The host name, made a valid node id (cluster.node_id's default)."""
    import socket

    return re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname())[:64] or "node"


@dataclass(frozen=True, slots=True)
class ClusterSection:
    """Several nodes on one PostgreSQL (docs/cluster.md): each node's name in the log."""

    node_id: str = field(default_factory=_host_name)  # default: the host name
    # The writer takes the connections other nodes pass on at this address; a node that
    # is not the writer passes its clients' connections there. 0: no passing on (a
    # second node waits as a standby, listening nowhere).
    port: int = 0
    host: str = "127.0.0.1"
    advertise: str = ""  # how the other nodes reach this node's cluster port; empty: host
    secret: str = ""  # shared by every node; required when host is not a loopback address


@dataclass(frozen=True, slots=True)
class LogSection:
    level: str = "info"
    format: str = "auto"  # "auto": console on a terminal, JSON lines otherwise


@dataclass(frozen=True, slots=True)
class TlsSection:
    port: int = 0  # 0: no TLS listener
    host: str = ""  # empty: same as server.host
    cert: str = ""
    key: str = ""


@dataclass(frozen=True, slots=True)
class TelnetSection:
    """The telnet door: the line protocol, with BINARY offered at connect."""

    host: str = ""  # empty: same as server.host
    port: int = 0  # 0: no telnet listener


@dataclass(frozen=True, slots=True)
class HttpSection:
    """The HTTP door: REST, long-poll, SSE, WebSocket and the web client (docs/http.md)."""

    host: str = ""  # empty: same as server.host
    port: int = 0  # 0: no HTTP listener
    tls_port: int = 0  # 0: no HTTPS listener (uses the [tls] certificate)
    max_header_bytes: int = 16384  # request line + headers; more: 431
    max_body_bytes: int = 65536  # JSON request bodies; POST /files may send files.max_bytes
    header_timeout_s: float = 10.0  # from a request's first byte to its last header: 408
    idle_timeout_s: float = 75.0  # keep-alive idle, and the longest gap inside a body
    max_connections_per_ip: int = 64  # open HTTP and WebSocket connections per address
    session_idle_s: float = 60.0  # a token's session logs out this long after its last use
    sse_keepalive_s: float = 15.0  # a comment line on an idle SSE stream this often


@dataclass(frozen=True, slots=True)
class IrcSection:
    """The IRC door: irssi, WeeChat and IRC bots (docs/irc.md)."""

    host: str = ""  # empty: same as server.host
    port: int = 0  # 0: no IRC listener
    tls_port: int = 0  # 0: no IRC-over-TLS listener (uses the [tls] certificate)
    server_name: str = "chatd"  # the source of server lines and the host of every user
    motd: str = ""  # message of the day, lines split on \n; empty: 422 (no MOTD)
    service_nick: str = "chatd"  # /msg it any line-protocol command (docs/irc.md)
    ping_interval_s: float = 120.0  # PING an idle client this often; no answer: closed


@dataclass(frozen=True, slots=True)
class MetricsSection:
    port: int = 0  # 0: no Prometheus endpoint
    host: str = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class Config:
    server: ServerSection = field(default_factory=ServerSection)
    chat: ChatSection = field(default_factory=ChatSection)
    limits: LimitsSection = field(default_factory=LimitsSection)
    moderation: ModerationSection = field(default_factory=ModerationSection)
    retention: RetentionSection = field(default_factory=RetentionSection)
    files: FilesSection = field(default_factory=FilesSection)
    rooms: RoomsSection = field(default_factory=RoomsSection)
    schedule: ScheduleSection = field(default_factory=ScheduleSection)
    auth: AuthSection = field(default_factory=AuthSection)
    store: StoreSection = field(default_factory=StoreSection)
    cluster: ClusterSection = field(default_factory=ClusterSection)
    log: LogSection = field(default_factory=LogSection)
    tls: TlsSection = field(default_factory=TlsSection)
    telnet: TelnetSection = field(default_factory=TelnetSection)
    http: HttpSection = field(default_factory=HttpSection)
    irc: IrcSection = field(default_factory=IrcSection)
    metrics: MetricsSection = field(default_factory=MetricsSection)

    def with_overrides(self, overrides: Mapping[str, object]) -> Config:
        """Returns a copy with dotted keys (`"server.port"`) replaced, validated."""
        data: dict[str, dict[str, object]] = {}
        for dotted, value in overrides.items():
            section, _, key = dotted.partition(".")
            data.setdefault(section, {})[key] = value
        return _merge(self, data)


_LEVELS = ("debug", "info", "warning", "error", "critical")
_CHOICES: dict[str, tuple[str, ...]] = {
    "log.level": _LEVELS,
    "log.format": ("auto", "json", "console"),
    "store.synchronous": ("full", "normal"),
    "chat.received": ("written", "acknowledged"),
    "store.backend": ("sqlite", "postgres"),
}
_POSITIVE = {
    "server.shutdown_timeout_s",
    "chat.max_sessions_per_user",
    "chat.history_max",
    "chat.recent_bytes",
    "chat.replay_page",
    "limits.max_line_bytes",
    "limits.general_messages_per_window",
    "limits.general_window_s",
    "limits.login_timeout_s",
    "limits.upload_idle_s",
    "limits.max_connections",
    "limits.max_connections_per_ip",
    "limits.send_buffer_bytes",
    "limits.flood_burst",
    "limits.flood_rate_per_s",
    "limits.login_failures_forget_s",
    "limits.private_window_s",
    "limits.room_window_s",
    "limits.rooms_created_window_s",
    "limits.invites_window_s",
    "limits.join_links_window_s",
    "limits.join_requests_window_s",
    "limits.accounts_window_s",
    "limits.schedules_per_tick",
    "store.commit_timeout_s",
    "store.commit_retry_s",
    "store.connect_timeout_s",
    "moderation.strikes_to_ban",
    "moderation.ban_duration_s",
    "moderation.strike_window_s",
    "retention.max_age_s",
    "retention.sweep_interval_s",
    "files.max_bytes",
    "http.max_header_bytes",
    "http.max_body_bytes",
    "http.header_timeout_s",
    "http.idle_timeout_s",
    "http.max_connections_per_ip",
    "http.session_idle_s",
    "http.sse_keepalive_s",
    "rooms.link_ttl_s",
    "rooms.invite_ttl_s",
    "schedule.horizon_s",
}
_PORTS = {
    "server.port",
    "tls.port",
    "metrics.port",
    "telnet.port",
    "http.port",
    "http.tls_port",
    "irc.port",
    "irc.tls_port",
    "cluster.port",
}


def load(path: str | Path | None) -> Config:
    """Reads a TOML file into a validated Config; None gives the built-in defaults."""
    if path is None:
        return Config()
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from e
    try:
        return _merge(Config(), data)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from e


def _merge(base: Config, data: Mapping[str, Any]) -> Config:
    sections: dict[str, object] = {}
    known = {f.name: f for f in fields(Config)}
    for name, table in data.items():
        if name not in known:
            raise ConfigError(f"unknown section [{name}]")
        if not isinstance(table, Mapping):
            raise ConfigError(f"[{name}] must be a table")
        current = getattr(base, name)
        sections[name] = _merge_section(name, current, table)
    merged = replace(base, **sections)  # type: ignore[arg-type]
    _check_store_and_cluster(merged)
    return merged


_NODE_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def _check_store_and_cluster(config: Config) -> None:
    """Settings that depend on each other: a PostgreSQL backend needs its dsn."""
    if config.store.backend == "postgres" and not config.store.dsn.strip():
        raise ConfigError('store.dsn must be set when store.backend is "postgres"')
    cluster = config.cluster
    if cluster.port and config.store.backend != "postgres":
        raise ConfigError('cluster.port needs store.backend = "postgres" (docs/cluster.md)')
    if cluster.port and not cluster.secret and not _loopback(cluster.host):
        raise ConfigError(
            f"cluster.secret must be set when cluster.host ({cluster.host}) is not a "
            "loopback address: whoever reaches cluster.port could claim any client address"
        )
    if not _NODE_ID.fullmatch(config.cluster.node_id):
        raise ConfigError(
            "cluster.node_id must be 1-64 characters of A-Z a-z 0-9 _ . -, "
            f"not {config.cluster.node_id!r}"
        )


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _merge_section(name: str, current: Any, table: Mapping[str, Any]) -> Any:
    hints = typing.get_type_hints(type(current))
    allowed = {f.name for f in fields(current)}
    changes: dict[str, object] = {}
    for key, value in table.items():
        dotted = f"{name}.{key}"
        if key not in allowed:
            raise ConfigError(f"unknown key {dotted}")
        changes[key] = _check(dotted, hints[key], value)
    return dataclasses.replace(current, **changes)


def _check(key: str, hint: Any, value: Any) -> object:
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, not {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be an integer, not {value!r}")
        _check_range(key, value)
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key} must be a number of seconds, not {value!r}")
        _check_range(key, value)
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, not {value!r}")
        choices = _CHOICES.get(key)
        if choices is not None and value.lower() not in choices:
            raise ConfigError(f"{key} must be one of {', '.join(choices)}, not {value!r}")
        if key == "server.timezone" and value:
            _check_timezone(key, value)
        return value.lower() if choices else value
    if typing.get_origin(hint) is tuple or isinstance(hint, types.GenericAlias):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{key} must be a list of strings, not {value!r}")
        if key in _NETWORK_LISTS:
            _check_networks(key, value)
        return tuple(value)
    raise ConfigError(f"{key}: unsupported setting type")  # pragma: no cover


def _check_range(key: str, value: float) -> None:
    if value < 0:
        raise ConfigError(f"{key} must not be negative, not {value!r}")
    if key in _POSITIVE and value == 0:
        raise ConfigError(f"{key} must be greater than 0")
    if key in _PORTS and value > 65535:
        raise ConfigError(f"{key} must be a port number (0-65535), not {value!r}")


_NETWORK_LISTS = {"limits.accounts_exempt_networks", "server.proxy_protocol_from"}


def _check_networks(key: str, value: list[str]) -> None:
    for item in value:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise ConfigError(f"{key}: not an address or network: {item!r}") from None


def _check_timezone(key: str, value: str) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise ConfigError(f"{key}: unknown time zone {value!r}") from e
