"""What a reload (SIGHUP, `systemctl reload`) may change: the rules, as pure functions.

Listeners and the database are opened once; the renderer's time zone and the log format
are fixed when they are built. Those keys are kept from the running config and logged
as needing a restart; everything else applies live.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from chatd.config import Config

#: Settings read only at start-up: a reload logs them as ignored and keeps the old value.
#: Listeners and the database are opened once; the renderer's time zone and the log
#: format are fixed when they are built (loggers are cached with their pipeline).
RESTART_SECTIONS = frozenset({"tls", "metrics", "store", "telnet", "cluster"})
RESTART_KEYS = frozenset(
    {
        "http.host",
        "http.port",
        "http.tls_port",
        "irc.host",
        "irc.port",
        "irc.tls_port",
        "server.host",
        "server.port",
        "server.data_dir",
        "server.timezone",
        "server.uvloop",
        "server.proxy_protocol_from",  # read by the listeners' factories
        "files.dir",  # the blob store is opened once
        "log.format",
        "chat.recent_bytes",  # the window is sized when the core is built
    }
)


@dataclass(frozen=True, slots=True)
class ReloadResult:
    """What a reload did: `applied` keys are live now, `ignored` ones need a restart."""

    ok: bool
    applied: tuple[str, ...] = ()
    ignored: tuple[str, ...] = ()
    error: str | None = None


def changed_keys(old: Config, new: Config) -> list[str]:
    """Dotted keys whose values differ, in file order."""
    keys: list[str] = []
    for section in fields(Config):
        a, b = getattr(old, section.name), getattr(new, section.name)
        if a == b:
            continue
        keys.extend(
            f"{section.name}.{f.name}"
            for f in fields(a)
            if getattr(a, f.name) != getattr(b, f.name)
        )
    return keys


def restart_only(key: str) -> bool:
    return key in RESTART_KEYS or key.partition(".")[0] in RESTART_SECTIONS


def reconcile(old: Config, new: Config) -> tuple[Config, ReloadResult]:
    """The config to run after a reload: `new`, but with restart-only settings kept."""
    changed = changed_keys(old, new)
    ignored = [k for k in changed if restart_only(k)]
    applied = tuple(k for k in changed if not restart_only(k))
    effective = new
    for key in ignored:
        section, _, name = key.partition(".")
        kept = getattr(old, section)
        current = getattr(effective, section)
        effective = replace(effective, **{section: replace(current, **{name: getattr(kept, name)})})
    return effective, ReloadResult(True, applied, tuple(ignored))
