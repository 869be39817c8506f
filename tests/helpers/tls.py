"""A throwaway CA and a certificate for 127.0.0.1, for the doors' TLS listeners."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme


@dataclass(frozen=True)
class Certificate:
    cert: Path
    key: Path
    client: ssl.SSLContext  # a client context that trusts the certificate's CA

    def settings(self) -> dict[str, object]:
        """The start_server settings that give the daemon this certificate."""
        return {"tls__cert": str(self.cert), "tls__key": str(self.key)}


def certificate(directory: Path) -> Certificate:
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1")
    cert, key = directory / "cert.pem", directory / "key.pem"
    issued.cert_chain_pems[0].write_to_path(cert)
    issued.private_key_pem.write_to_path(key)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return Certificate(cert, key, client)
