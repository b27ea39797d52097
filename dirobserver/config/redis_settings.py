"""
The Redis settings, and the rules that span several Redis keys.

Each Redis key is one row of L{dirobserver.config.settings.KEYS}, read by its kind
like any other.  What one key's value means for another is here:

  - Sentinels name the master's address: no C{redis_server}, C{redis_port}
    or C{redis_unix_socket} with them, and C{redis_sentinel_master} required;
  - a Unix socket wins over host and port;
  - C{--embedded-redis} gives host and port their defaults;
  - a user needs a password, and the TLS keys need C{redis_tls} (a client
    certificate needs its key, and TLS is not for a Unix socket);
  - a round's wait for replicas ends before its reply's deadline.

Standard library only, like the rest of the configuration.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dirobserver.config.values import SectionReader

#: Where C{--embedded-redis} runs its server when the file names none.
EMBEDDED_HOST, EMBEDDED_PORT = "127.0.0.1", 6379


@dataclass(frozen=True)
class RedisSettings:
    """The one Redis server shared by all active sections."""

    host: str | None
    port: int | None
    unix_socket: str | None
    password: str | None
    db: int | None
    timeout: float
    username: str | None = None
    #: C{(host, port)} of each Sentinel; empty: the address above is used
    sentinels: tuple[tuple[str, int], ...] = ()
    sentinel_master: str | None = None
    sentinel_username: str | None = None
    sentinel_password: str | None = None
    tls: bool = False
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_server_name: str | None = None
    tls_verify: bool = True
    #: replicas each round waits for (C{WAIT}), and for how long at most
    wait_replicas: int = 0
    wait_timeout: float = 1.0

    def describe(self) -> str:
        """C{host:port}, C{unix:/path} or the Sentinel master, for log lines (never a password)."""
        if self.sentinels:
            return f"master {self.sentinel_master} (Sentinel)"
        if self.unix_socket:
            return f"unix:{self.unix_socket}"
        return f"{self.host}:{self.port}"

    def tcp_address(self) -> tuple[str, int]:
        """
        C{(host, port)} of the server.

        @raise ValueError: the settings name no TCP address: a Unix socket,
            or Sentinels that name the master (the configuration gives
            host and port values in every other case).
        """
        if self.host is None or self.port is None:
            raise ValueError(f"Redis at {self.describe()}: no TCP host and port in the settings")
        return self.host, self.port


_TLS_KEYS = ("redis_tls_ca", "redis_tls_cert", "redis_tls_key", "redis_tls_server_name")
_SENTINEL_KEYS = ("redis_sentinel_master", "redis_sentinel_username", "redis_sentinel_password")


def redis_endpoint(r: SectionReader, values: dict[str, Any], redis_optional: bool) -> None:
    """The rules that span the Redis keys, applied to one section's C{values}."""
    if values["redis_sentinels"]:
        for other in ("redis_server", "redis_port", "redis_unix_socket"):
            if values[other] is not None:
                raise r.fail(other, "cannot be set with redis_sentinels: the Sentinels name the "
                             "master's address (remove one of the two)")
        if values["redis_sentinel_master"] is None:
            raise r.fail("redis_sentinel_master", "required when redis_sentinels is set (the name "
                         "the Sentinels monitor the master under)")
    else:
        for key in _SENTINEL_KEYS:
            if values[key] is not None:
                r.warn(key, "ignored: redis_sentinels is not set")
    _access(r, values)
    if values["redis_wait_replicas"] and values["redis_wait_timeout"] >= values["timeout"]:
        raise r.fail("redis_wait_timeout", f"must be shorter than timeout ({values['timeout']:g} s): "
                     "a round that waits longer than that is taken for a Redis that does not answer")
    if values["redis_sentinels"]:
        return
    if values["redis_unix_socket"]:
        if values["redis_server"] or values["redis_port"]:
            r.warn("redis_unix_socket", "set, so redis_server and redis_port are ignored")
        values["redis_server"] = values["redis_port"] = None
        return
    if values["redis_server"] is None:
        if not redis_optional:
            raise r.fail("redis_server", "required in an active section")
        values["redis_server"] = EMBEDDED_HOST
    if values["redis_port"] is None:
        if not redis_optional:
            raise r.fail("redis_port", "required in an active section (or set redis_unix_socket)")
        values["redis_port"] = EMBEDDED_PORT


def _access(r: SectionReader, values: dict[str, Any]) -> None:
    """What the ACL and TLS keys need of each other."""
    for user, password in (("redis_username", "redis_password"),
                           ("redis_sentinel_username", "redis_sentinel_password")):
        if values[user] is not None and values[password] is None:
            raise r.fail(user, f"needs {password} (AUTH {user} {password})")
    if not values["redis_tls"]:
        for key in _TLS_KEYS + ("redis_tls_verify",) * (not values["redis_tls_verify"]):
            if values[key] is not None:
                r.warn(key, "ignored: redis_tls is not true")
        return
    if values["redis_unix_socket"]:
        raise r.fail("redis_tls", "TLS is for TCP connections: not with redis_unix_socket")
    if (values["redis_tls_cert"] is None) != (values["redis_tls_key"] is None):
        given, needed = (("redis_tls_cert", "redis_tls_key") if values["redis_tls_cert"]
                         else ("redis_tls_key", "redis_tls_cert"))
        raise r.fail(given, f"needs {needed} too (a client certificate is a certificate and its key)")
    if not values["redis_tls_verify"]:
        r.warn("redis_tls_verify", "false: the Redis server's certificate and name are NOT "
               "verified; whoever can reach the network path can pose as the server and read or "
               "change the events")
