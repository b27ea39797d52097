"""
What listens at the embedded server's address, found before starting one
(L{dirobserver.app.embedded_redis}): nothing, a Redis, or another program.

L{probe} sends a real RESP C{PING}: a Redis already there (one started by
hand, or a previous embedded server) answers C{+PONG}, or an error such as
C{-NOAUTH} that is still RESP; an HTTP server, a program that says nothing
or hangs up is not a Redis, and a writer retrying forever against it would
never deliver anything.  Merely connecting, as this probe once did, could
not tell them apart.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

__all__ = ["PROBE_REPLY_TIMEOUT", "PROBE_TIMEOUT", "Probed", "probe"]

# The start-up probe for an already running Redis blocks the (not yet
# running) reactor, so it must stay short: a connection on the loopback is
# made at once or refused, and a Redis answers PING within a millisecond;
# the reply timeout is longer only for a Redis busy with something else.
PROBE_TIMEOUT = 0.2
PROBE_REPLY_TIMEOUT = 1.0


#: PING as a RESP array (what every client sends), not the inline form.
_PING = b"*1\r\n$4\r\nPING\r\n"
#: Enough of a reply to see its first line.
_REPLY_BYTES = 256


@dataclass(frozen=True)
class Probed:
    """
    What answers at an address (L{probe}).

    @ivar redis: a Redis answers (its reply to PING was RESP).
    @ivar other: something else accepts connections there: what it did, in
        a few words (else None).
    """

    redis: bool = False
    other: str | None = None

    @property
    def nothing(self) -> bool:
        """Nothing accepts connections there."""
        return not self.redis and self.other is None


def probe(host: str, port: int, timeout: float = PROBE_TIMEOUT,
          reply_timeout: float = PROBE_REPLY_TIMEOUT) -> Probed:
    """
    Send a RESP C{PING} to host:port, and tell a Redis from anything else.

    A reply whose first line is a RESP simple string or error (C{+PONG},
    C{-NOAUTH ...}, C{-ERR ...}, C{-LOADING ...}) is a Redis: one that wants
    a password or is loading is still a Redis, for the writer to handle.
    """
    try:
        connection = socket.create_connection((host, port), timeout=timeout)
    except OSError:
        return Probed()
    with connection:
        reply = b""
        try:
            connection.settimeout(reply_timeout)
            connection.sendall(_PING)
            while b"\r\n" not in reply and len(reply) < _REPLY_BYTES:
                chunk = connection.recv(_REPLY_BYTES)
                if not chunk:
                    break
                reply += chunk
        except TimeoutError:
            if not reply:
                return Probed(other=f"no answer to PING within {reply_timeout:g} s")
        except OSError as e:
            return Probed(other=f"the connection failed: {e.strerror or e}")
    line, crlf, _ = reply.partition(b"\r\n")
    if crlf and line[:1] in (b"+", b"-"):
        return Probed(redis=True)
    if not reply.strip():
        return Probed(other="it closed the connection without answering PING")
    first = reply.strip().splitlines()[0][:60].decode("ascii", "backslashreplace")
    return Probed(other=f"it answered PING with {first!r}")

