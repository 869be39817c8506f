"""TLS server contexts: real handshakes over loopback with trustme certificates, and
operator-readable errors for every way the certificate files can be wrong."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from chatd.config import ConfigError
from chatd.server.tls import load_certificate, server_context

TIMEOUT_S = 10.0  # a guard against hanging, never a measured quantity


@dataclass(frozen=True)
class Pair:
    cert: Path
    key: Path
    serial: int


def write_pair(ca: trustme.CA, directory: Path, name: str) -> Pair:
    issued = ca.issue_cert("localhost", "127.0.0.1")
    cert = directory / f"{name}.crt"
    key = directory / f"{name}.key"
    cert.write_bytes(b"".join(p.bytes() for p in issued.cert_chain_pems))
    issued.private_key_pem.write_to_path(str(key))
    serial = x509.load_pem_x509_certificate(issued.cert_chain_pems[0].bytes()).serial_number
    return Pair(cert, key, serial)


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def pair(ca: trustme.CA, tmp_path: Path) -> Pair:
    return write_pair(ca, tmp_path, "server")


@pytest.fixture
def client_ctx(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while line := await reader.readline():
            writer.write(line)
            await writer.drain()
    except (ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()


@pytest.fixture
async def tls_server(pair: Pair) -> AsyncIterator[tuple[int, ssl.SSLContext]]:
    ctx = server_context(pair.cert, pair.key)
    server = await asyncio.start_server(echo, "127.0.0.1", 0, ssl=ctx)
    port = server.sockets[0].getsockname()[1]
    yield port, ctx
    server.close()
    await server.wait_closed()


async def round_trip(port: int, client_ctx: ssl.SSLContext, line: bytes) -> ssl.SSLObject:
    async with asyncio.timeout(TIMEOUT_S):
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_ctx, server_hostname="localhost"
        )
        try:
            writer.write(line)
            await writer.drain()
            assert await reader.readline() == line
            tls = writer.get_extra_info("ssl_object")
            assert isinstance(tls, ssl.SSLObject)
            return tls
        finally:
            writer.close()
            await writer.wait_closed()


def peer_serial(tls: ssl.SSLObject) -> int:
    cert = tls.getpeercert()
    assert cert is not None
    return int(str(cert["serialNumber"]), 16)


async def test_round_trip_over_tls(
    tls_server: tuple[int, ssl.SSLContext], client_ctx: ssl.SSLContext, pair: Pair
) -> None:
    port, _ = tls_server
    tls = await round_trip(port, client_ctx, "héllo over TLS\n".encode())
    assert tls.version() == "TLSv1.3"
    assert peer_serial(tls) == pair.serial


async def test_tls12_client_is_accepted(
    tls_server: tuple[int, ssl.SSLContext], client_ctx: ssl.SSLContext
) -> None:
    port, _ = tls_server
    client_ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    tls = await round_trip(port, client_ctx, b"hi\n")
    assert tls.version() == "TLSv1.2"


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
async def test_tls11_client_is_refused(
    tls_server: tuple[int, ssl.SSLContext], client_ctx: ssl.SSLContext, pair: Pair
) -> None:
    port, ctx = tls_server
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    # Let the client offer TLS 1.1 despite the system policy, so the refusal is the server's.
    client_ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    client_ctx.minimum_version = ssl.TLSVersion.TLSv1
    client_ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        await round_trip(port, client_ctx, b"hi\n")

    # Control: the same client does complete TLS 1.1 with a server that allows it.
    lax = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    lax.set_ciphers("DEFAULT:@SECLEVEL=0")
    lax.minimum_version = ssl.TLSVersion.TLSv1
    lax.load_cert_chain(pair.cert, pair.key)
    server = await asyncio.start_server(echo, "127.0.0.1", 0, ssl=lax)
    try:
        tls = await round_trip(server.sockets[0].getsockname()[1], client_ctx, b"hi\n")
        assert tls.version() == "TLSv1.1"
    finally:
        server.close()
        await server.wait_closed()


async def test_untrusted_client_fails_verification(tls_server: tuple[int, ssl.SSLContext]) -> None:
    port, _ = tls_server
    stranger = ssl.create_default_context()
    trustme.CA().configure_trust(stranger)
    with pytest.raises(ssl.SSLCertVerificationError):
        await round_trip(port, stranger, b"hi\n")


async def test_renewed_certificate_applies_to_new_handshakes(
    tls_server: tuple[int, ssl.SSLContext],
    client_ctx: ssl.SSLContext,
    ca: trustme.CA,
    pair: Pair,
    tmp_path: Path,
) -> None:
    port, ctx = tls_server
    renewed = write_pair(ca, tmp_path, "renewed")
    load_certificate(ctx, renewed.cert, renewed.key)
    assert peer_serial(await round_trip(port, client_ctx, b"a\n")) == renewed.serial

    # A broken renewal is refused and the server keeps the certificate it had.
    with pytest.raises(ConfigError, match="not the private key"):
        load_certificate(ctx, pair.cert, renewed.key)
    assert peer_serial(await round_trip(port, client_ctx, b"b\n")) == renewed.serial


def test_missing_files(pair: Pair, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"tls\.cert .*nope\.crt: no such file"):
        server_context(tmp_path / "nope.crt", pair.key)
    with pytest.raises(ConfigError, match=r"tls\.key .*nope\.key: no such file"):
        server_context(pair.cert, tmp_path / "nope.key")
    with pytest.raises(ConfigError, match=r"tls\.cert must be set"):
        server_context("", pair.key)
    with pytest.raises(ConfigError, match="is a directory"):
        server_context(tmp_path, pair.key)


def test_invalid_files(ca: trustme.CA, pair: Pair, tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match=r"tls\.cert .*junk\.pem: no PEM certificate"):
        server_context(junk, pair.key)
    with pytest.raises(ConfigError, match=r"tls\.cert .*: no PEM certificate"):
        server_context(pair.key, pair.cert)  # swapped
    with pytest.raises(ConfigError, match=r"tls\.key .*junk\.pem: not a usable PEM private key"):
        server_context(pair.cert, junk)
    other = write_pair(ca, tmp_path, "other")
    with pytest.raises(ConfigError, match=r"tls\.key .*other\.key is not the private key"):
        server_context(pair.cert, other.key)


def test_encrypted_key_is_refused_without_prompting(pair: Pair, tmp_path: Path) -> None:
    key = serialization.load_pem_private_key(pair.key.read_bytes(), password=None)
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    with pytest.raises(ConfigError, match="encrypted"):
        server_context(pair.cert, encrypted)
