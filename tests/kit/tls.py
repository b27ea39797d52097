"""
TLS for the tests: certificates made on the spot, and a real TLS Redis.

The wheel's valkey-server is built without TLS; Debian's C{redis-server}
package is built with it (C{.ci/run} installs it when it is missing).
L{Certificates} makes a CA, a server certificate for C{localhost} and
C{127.0.0.1}, a client certificate, and an unrelated CA, with
C{cryptography} (installed with Twisted's TLS extra).
"""

from __future__ import annotations

import datetime
import ipaddress
import shutil
import socket
import ssl
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .redis_server import RedisServer

#: Debian's redis-server (built with TLS), or None.
TLS_SERVER_BINARY = shutil.which("redis-server") or (
    "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
)

needs_tls_server = pytest.mark.skipif(
    TLS_SERVER_BINARY is None,
    reason="redis-server (built with TLS) is not installed: apt-get install redis-server "
           "(.ci/run does it)",
)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(key: Any, path: Path) -> None:
    path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ))


class Certificates:
    """
    PEM files in one directory: C{ca}, C{server_cert}/C{server_key} (for
    C{localhost} and C{127.0.0.1}, signed by C{ca}), C{client_cert}/
    C{client_key} (signed by C{ca}) and C{other_ca} (signed nothing here).
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        ca_key, ca = self._authority("dirobserver test CA", "ca.pem")
        self._authority("unrelated CA", "other-ca.pem")
        self.ca = self.directory / "ca.pem"
        self.other_ca = self.directory / "other-ca.pem"
        self.server_cert, self.server_key = self._leaf(
            ca_key, ca, "server", [x509.DNSName("localhost"),
                                   x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
            ExtendedKeyUsageOID.SERVER_AUTH,
        )
        self.client_cert, self.client_key = self._leaf(
            ca_key, ca, "client", [x509.DNSName("dirobserver")], ExtendedKeyUsageOID.CLIENT_AUTH,
        )

    @staticmethod
    def _validity(builder: x509.CertificateBuilder) -> x509.CertificateBuilder:
        now = datetime.datetime.now(datetime.timezone.utc)
        return builder.not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(
            now + datetime.timedelta(days=2))

    def _authority(self, common_name: str, filename: str) -> tuple[Any, x509.Certificate]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = self._validity(x509.CertificateBuilder()
                                 .subject_name(_name(common_name)).issuer_name(_name(common_name))
                                 .public_key(key.public_key())
                                 .serial_number(x509.random_serial_number()))
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        cert = builder.sign(key, hashes.SHA256())
        (self.directory / filename).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return key, cert

    def _leaf(self, ca_key: Any, ca: x509.Certificate, stem: str, names: list[Any],
              usage: Any) -> tuple[Path, Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = self._validity(x509.CertificateBuilder()
                                 .subject_name(_name(f"dirobserver test {stem}"))
                                 .issuer_name(ca.subject).public_key(key.public_key())
                                 .serial_number(x509.random_serial_number()))
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        cert_path, key_path = self.directory / f"{stem}.pem", self.directory / f"{stem}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(key, key_path)
        return cert_path, key_path


class TLSRedisServer(RedisServer):
    """
    Debian's redis-server listening with TLS only (C{--port 0 --tls-port}),
    with the server certificate of L{Certificates}.

    @param auth_clients: C{tls-auth-clients}: C{"no"}, C{"optional"} or
        C{"yes"} (a client certificate signed by the CA is required).
    """

    def __init__(self, certificates: Certificates, auth_clients: str = "no",
                 workdir: str | Path | None = None, extra_args: Sequence[str] = (),
                 config_file: str | Path | None = None) -> None:
        self.certificates = certificates
        super().__init__(workdir=workdir, binary=TLS_SERVER_BINARY, config_file=config_file)
        self.extra_args = [
            "--port", "0", "--tls-port", str(self.port),
            "--tls-cert-file", str(certificates.server_cert),
            "--tls-key-file", str(certificates.server_key),
            "--tls-ca-cert-file", str(certificates.ca),
            "--tls-auth-clients", auth_clients,
            *extra_args,
        ]

    def _context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.certificates.ca))
        context.load_cert_chain(str(self.certificates.client_cert), str(self.certificates.client_key))
        return context

    def ping(self, timeout: float = 0.5) -> bool:
        """One inline PING over a fresh TLS connection; True on +PONG."""
        try:
            with socket.create_connection((self.host, self.port), timeout=timeout) as raw:
                with self._context().wrap_socket(raw, server_hostname=self.host) as s:
                    s.sendall(b"PING\r\n")
                    return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def client(self, **kwargs: Any) -> Any:
        """A C{valkey.Valkey} client over TLS, with the client certificate."""
        import valkey

        kwargs.setdefault("decode_responses", False)
        return valkey.Valkey(
            host=self.host, port=self.port, ssl=True, ssl_ca_certs=str(self.certificates.ca),
            ssl_certfile=str(self.certificates.client_cert),
            ssl_keyfile=str(self.certificates.client_key), **kwargs,
        )


def tls_settings(server: TLSRedisServer | None = None, **changes: Any) -> Any:
    """RedisSettings for C{server} over TLS, verified against the test CA."""
    from dirobserver.config.settings import RedisSettings

    values: dict[str, Any] = dict(
        host="127.0.0.1", port=server.port if server else 6379, unix_socket=None, password=None,
        db=None, timeout=1.0, tls=True, tls_ca=str(server.certificates.ca) if server else None,
    )
    values.update(changes)
    return RedisSettings(**values)
