"""The TLS server context: stdlib ssl, TLS 1.2 or newer, errors an operator can act on.

Certificate problems surface as `ConfigError` naming the setting and the file, at start-up
(or reload), instead of as an OpenSSL error on the first handshake.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path

from chatd.config import ConfigError


def server_context(cert: str | Path, key: str | Path) -> ssl.SSLContext:
    """A server context for `cert` (PEM, leaf first, then intermediates) and `key` (PEM,
    unencrypted). Raises ConfigError when a file is missing, unreadable, not PEM, or the
    key does not belong to the certificate."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    # Renegotiation only serves attacks on a line protocol; compression invites CRIME.
    ctx.options |= ssl.OP_NO_RENEGOTIATION | ssl.OP_NO_COMPRESSION
    load_certificate(ctx, cert, key)
    return ctx


def load_certificate(ctx: ssl.SSLContext, cert: str | Path, key: str | Path) -> None:
    """Loads a certificate and key into `ctx`, replacing any earlier pair.

    New handshakes on a listening server use the new pair, so a reload can pick up a
    renewed certificate without dropping connections. The pair is checked on a scratch
    context first, so a bad renewal leaves `ctx` serving the old one.
    """
    cert_path = _readable("tls.cert", cert)
    key_path = _readable("tls.key", key)
    scratch = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        scratch.load_verify_locations(cafile=cert_path)
    except ssl.SSLError as e:
        raise ConfigError(f"tls.cert {cert_path}: no PEM certificate in it ({_reason(e)})") from e
    for target in (scratch, ctx):
        try:
            target.load_cert_chain(cert_path, key_path, password=_no_password)
        except ssl.SSLError as e:
            if e.reason == "KEY_VALUES_MISMATCH":
                raise ConfigError(
                    f"tls.key {key_path} is not the private key of tls.cert {cert_path}"
                ) from e
            raise ConfigError(
                f"tls.key {key_path}: not a usable PEM private key for tls.cert {cert_path} "
                f"({_reason(e)})"
            ) from e


def _readable(setting: str, path: str | Path) -> str:
    if not str(path):
        raise ConfigError(f"{setting} must be set when tls.port is set")
    try:
        with open(path, "rb"):
            pass
    except FileNotFoundError:
        raise ConfigError(f"{setting} {path}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{setting} {path}: is a directory, not a PEM file") from None
    except OSError as e:
        raise ConfigError(f"{setting} {path}: cannot read: {e.strerror}") from None
    return os.fspath(path)


def _reason(e: ssl.SSLError) -> str:
    return str(e.reason or e.strerror or e)


def _no_password() -> bytes:
    # Without a callback OpenSSL would prompt on the terminal and hang a foreground start.
    raise ConfigError("tls.key is encrypted; chatd needs an unencrypted private key")
