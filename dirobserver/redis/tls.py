"""
TLS for the connections to Redis (and to the Sentinels): how the client
side of a connection is made, and what a failed handshake means.

Verification is on unless C{redis_tls_verify = false} says otherwise: the
server's certificate must chain to the CA certificates of C{redis_tls_ca}
(the system's trust store by default), and be valid for the name connected
to (C{redis_tls_server_name}, else the host dialled: C{redis_server}, the
host a Sentinel names, or the Sentinel's own).  Twisted's
C{optionsForClientTLS} does both, host names and IP addresses alike (the
latter through C{service_identity}'s IP address identities).  txredisapi's
own C{ssl_context_factory=True} verifies nothing: it is not used.

The files are read at every connection attempt, so certificates renewed on
disk are picked up at the next reconnect; L{check} reads them once at start
so that a missing or broken file is a configuration error.

A certificate that does not verify fails the handshake; L{describe_failure}
turns that into one line naming the name and the CA, and the connection
retries with its capped backoff.  Nothing is ever sent to a server that did
not verify: the commands wait in the TLS layer until the handshake is done.
"""

from __future__ import annotations

import re
from typing import Any

from OpenSSL import SSL
from service_identity import VerificationError
from twisted.internet import ssl
from twisted.python.failure import Failure

from dirobserver.config.settings import RedisSettings

_PEM_CERTIFICATE = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


class TLSSetupError(Exception):
    """A file named by the C{redis_tls_*} keys cannot be used (one line)."""


def server_name(settings: RedisSettings, host: str) -> str:
    """The name the certificate of C{host} must be valid for."""
    return settings.tls_server_name or host


def _read(key: str, path: str) -> bytes:
    try:
        with open(path, "rb") as stream:
            return stream.read()
    except OSError as e:
        raise TLSSetupError(f"{key} {path}: {e.strerror or e}") from None


def _trust_root(path: str) -> Any:
    """The CA certificates of the PEM bundle C{path}."""
    blocks = _PEM_CERTIFICATE.findall(_read("redis_tls_ca", path))
    if not blocks:
        raise TLSSetupError(f"redis_tls_ca {path}: no PEM certificate in it")
    try:
        return ssl.trustRootFromCertificates([ssl.Certificate.loadPEM(block) for block in blocks])
    except Exception as e:
        raise TLSSetupError(f"redis_tls_ca {path}: not a valid certificate ({e})") from None


def _client_certificate(settings: RedisSettings) -> ssl.PrivateCertificate | None:
    if not (settings.tls_cert and settings.tls_key):
        return None
    cert = _read("redis_tls_cert", settings.tls_cert)
    key = _read("redis_tls_key", settings.tls_key)
    try:
        certificate = ssl.PrivateCertificate.loadPEM(cert + b"\n" + key)
        # The pair must match: OpenSSL says so only when a context is made.
        ssl.CertificateOptions(
            privateKey=certificate.privateKey.original, certificate=certificate.original
        ).getContext()
    except Exception as e:
        raise TLSSetupError(
            f"redis_tls_cert {settings.tls_cert} with redis_tls_key {settings.tls_key}: "
            f"not a usable certificate and key ({_ssl_text(e) or e})"
        ) from None
    return certificate


def client_creator(settings: RedisSettings, host: str) -> Any:
    """
    The client side of a TLS connection to C{host}, as
    C{twisted.internet.endpoints.wrapClientTLS} takes it.

    @raise TLSSetupError: a file cannot be read or used.
    """
    client = _client_certificate(settings)
    if not settings.tls_verify:
        # Explicitly asked for (and warned about at every start).
        options: dict[str, Any] = {}
        if client is not None:
            options = {"privateKey": client.privateKey.original, "certificate": client.original}
        return ssl.CertificateOptions(verify=False, **options)
    trust = _trust_root(settings.tls_ca) if settings.tls_ca else ssl.platformTrust()
    return ssl.optionsForClientTLS(server_name(settings, host), trust, client)


def check(settings: RedisSettings) -> str | None:
    """None when TLS is off or its files can be used; else why not, in one line."""
    if not settings.tls:
        return None
    try:
        client_creator(settings, settings.host or "localhost")
    except TLSSetupError as e:
        return str(e)
    return None


def _ssl_text(error: BaseException) -> str:
    """The reasons inside a pyOpenSSL error, joined (C{"certificate verify failed"})."""
    if not isinstance(error, SSL.Error) or not error.args or not isinstance(error.args[0], list):
        return ""
    return "; ".join(str(item[-1]) for item in error.args[0] if item and item[-1])


def describe_failure(reason: Failure, settings: RedisSettings, host: str) -> str | None:
    """
    What a connection lost with C{reason} during the handshake says about
    TLS, worded to follow C{"Redis at host:port "}; None when it is not
    about TLS.
    """
    name = server_name(settings, host)
    trusted = (f"the CA certificates in redis_tls_ca {settings.tls_ca}" if settings.tls_ca
               else "the system's trust store (redis_tls_ca is not set)")
    if reason.check(VerificationError):
        return (f"presented a TLS certificate that is not valid for the name {name!r}; "
                "set redis_tls_server_name to a name the certificate holds")
    if reason.check(SSL.Error) and reason.value is not None:
        text = _ssl_text(reason.value) or str(reason.value)
        if "certificate verify failed" in text:
            return (f"presented a TLS certificate (for the name {name!r}) that does not verify "
                    f"against {trusted}")
        return f"failed the TLS handshake ({text})"
    return None
