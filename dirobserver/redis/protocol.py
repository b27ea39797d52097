"""
A lean Redis protocol for the writer's connection: RESP2, pipelined.

At everyday rates (one file every millisecond) every file is a round of its
own, and the cost of a round was mostly machinery, not work: txredisapi
builds a Deferred, a queue entry and a line-by-line parse for each of the
four commands of a transaction, and Twisted's buffered write takes a reactor
turn of its own (and two C{epoll_ctl} calls) before the bytes leave.  This
protocol keeps what the observer needs and nothing more:

 - L{RespProtocol.execute_command} sends one command and returns a Deferred
   of its reply (the handshake, C{LLEN}, C{ROLE}...);
 - L{RespProtocol.pipeline} sends several commands in one write and returns
   ONE Deferred of the list of their replies (a round of transactions);
 - replies are parsed from the received bytes with C{bytes.find}, no line
   splitting, and handed to waiters in order;
 - a write goes straight to the socket when nothing is buffered before it
   (Twisted's buffer takes only what the socket does not).

Replies are what txredisapi returns with C{charset="utf-8"} and
C{convertNumbers=False}: status replies and bulk strings as C{str} (bytes
that are not UTF-8 stay C{bytes}), integers as C{int}, arrays as lists, nil
as None, and error replies as L{txredisapi.ResponseError} (inside an array
as an element, at the top a failed Deferred); a lost connection fails every
waiting Deferred with L{txredisapi.ConnectionError}.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Sequence

from txredisapi import ConnectionError, ResponseError
from twisted.internet import defer, protocol, tcp
from twisted.python.failure import Failure

_CRLF = b"\r\n"

#: Marks "not enough bytes yet" in the parser (None is a valid reply).
_INCOMPLETE = object()


def encode_command(args: Sequence[Any]) -> bytes:
    """One command in RESP (an array of bulk strings)."""
    try:
        # The usual case (events are bytes already): one comprehension.
        body = b"".join([b"$%d\r\n%s\r\n" % (len(arg), arg) for arg in args])
    except TypeError:  # a str or an int among them
        args = [_bytes(arg) for arg in args]
        body = b"".join([b"$%d\r\n%s\r\n" % (len(arg), arg) for arg in args])
    return b"*%d\r\n" % len(args) + body


def _bytes(arg: Any) -> bytes:
    if isinstance(arg, bytes):
        return arg
    if isinstance(arg, str):
        return arg.encode("utf-8")
    return str(arg).encode("ascii")


def _text(raw: bytes) -> str | bytes:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw


def parse_reply(data: bytes, pos: int) -> tuple[Any, int]:
    """
    One reply from C{data} at C{pos}.

    @return: C{(reply, next position)}, or C{(_INCOMPLETE, pos)} when the
        bytes end before the reply does.
    @raise ValueError: the bytes are not RESP (not a Redis server).
    """
    end = data.find(_CRLF, pos)
    if end < 0:
        return _INCOMPLETE, pos
    kind = data[pos:pos + 1]
    line = data[pos + 1:end]
    after = end + 2
    if kind == b"+":
        return _text(line), after
    if kind == b":":
        return int(line), after
    if kind == b"$":
        size = int(line)
        if size < 0:
            return None, after
        if len(data) < after + size + 2:
            return _INCOMPLETE, pos
        return _text(data[after:after + size]), after + size + 2
    if kind == b"*":
        count = int(line)
        if count < 0:
            return None, after
        items = []
        for _ in range(count):
            item, after = parse_reply(data, after)
            if item is _INCOMPLETE:
                return _INCOMPLETE, pos
            items.append(item)
        return items, after
    if kind == b"-":
        return ResponseError(line.decode("utf-8", "replace")), after
    raise ValueError(f"not a Redis reply: {data[pos:pos + 20]!r}")


class RespProtocol(protocol.Protocol):
    """
    A pipelined RESP2 client connection.

    @ivar factory: the factory that built it.
    @ivar lost_reason: why the connection was lost (a failed TLS handshake
        shows here, while the commands waiting only see "Lost connection").
    @ivar handshake_replies: the replies to the handshake's steps, in order
        (see L{dirobserver.redis.attempt}).
    """

    factory: Any = None
    lost_reason: Any = None
    handshake_replies: list[Any] = []

    def __init__(self, **_txredisapi_options: Any) -> None:
        # Built by the same factory as txredisapi's protocol, with its
        # options (charset, convertNumbers): this one decodes as that one
        # does with charset="utf-8", convertNumbers=False.
        self._corked: list[bytes] | None = None
        self._buffer = b""
        #: per expected reply, in order: (Deferred, how many replies it
        #: collects (0: one reply, not a list), the replies collected)
        self._waiting: deque[list[Any]] = deque()
        self._up = False
        self._when_up: list[defer.Deferred] = []
        self._lost: list[defer.Deferred] = []
        self._gone: Failure | None = None

    # -- what txredisapi's protocol offered, as the rest of the code uses it --

    def whenConnected(self) -> defer.Deferred:
        """Fires with this protocol once the transport is connected."""
        if self._up:
            return defer.succeed(self)
        d: defer.Deferred = defer.Deferred()
        self._when_up.append(d)
        return d

    def whenDisconnected(self) -> defer.Deferred:
        """Fires with this protocol once the connection is lost."""
        d: defer.Deferred = defer.Deferred()
        if self._gone is not None:
            d.callback(self)
        else:
            self._lost.append(d)
        return d

    def execute_command(self, *args: Any) -> defer.Deferred:
        """Send one command; the Deferred fires with its reply."""
        d: defer.Deferred = defer.Deferred()
        if self._gone is not None:
            d.errback(ConnectionError("Not connected"))
            return d
        self._waiting.append([d, 0, None])
        self._send(encode_command(args))
        return d

    def pipeline(self, commands: Sequence[Sequence[Any]]) -> defer.Deferred:
        """
        Send C{commands} in one write; the Deferred fires with the list of
        their replies (error replies as L{ResponseError} elements).
        """
        d: defer.Deferred = defer.Deferred()
        if self._gone is not None:
            d.errback(ConnectionError("Not connected"))
            return d
        if not commands:
            d.callback([])
            return d
        self._waiting.append([d, len(commands), []])
        self._send(b"".join([encode_command(c) for c in commands]))
        return d

    # -- Twisted -------------------------------------------------------------

    def connectionMade(self) -> None:
        self._up = True
        waiting, self._when_up = self._when_up, []
        for d in waiting:
            d.callback(self)

    def dataReceived(self, data: bytes) -> None:
        buffer = self._buffer + data if self._buffer else data
        pos, size, waiting = 0, len(buffer), self._waiting
        try:
            while pos < size:
                reply, pos_after = parse_reply(buffer, pos)
                if reply is _INCOMPLETE:
                    break
                pos = pos_after
                self._deliver(waiting, reply)
        except ValueError:
            # Not RESP: whatever this is, it is not a usable Redis.
            self._buffer = b""
            self.transport.abortConnection()
            return
        self._buffer = buffer[pos:] if pos < size else b""

    @staticmethod
    def _deliver(waiting: deque, reply: Any) -> None:
        if not waiting:
            return  # a reply nobody asked for (cannot happen with RESP2)
        entry = waiting[0]
        d, count, replies = entry
        if count == 0:
            waiting.popleft()
            if isinstance(reply, ResponseError):
                d.errback(reply)
            else:
                d.callback(reply)
            return
        replies.append(reply)
        if len(replies) == count:
            waiting.popleft()
            d.callback(replies)

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self._gone = reason
        self.lost_reason = reason
        self._corked = None
        # Whoever owns the connection hears of its loss before the commands
        # in flight fail: a round failing for that reason is then resent,
        # not taken for a refusal by Redis.
        lost, self._lost = self._lost, []
        for d in lost:
            d.callback(self)
        waiting, self._waiting = self._waiting, deque()
        for d, _count, _replies in waiting:
            d.errback(ConnectionError("Lost connection"))

    # -- writing ---------------------------------------------------------------

    def cork(self) -> None:
        """Hold what is sent until L{uncork}: a round's commands leave in one write."""
        if self._corked is None:
            self._corked = []

    def uncork(self) -> None:
        """Send what was held since L{cork}, in one write."""
        corked, self._corked = self._corked, None
        if corked:
            self._send(b"".join(corked))

    def _send(self, data: bytes) -> None:
        if self._corked is not None:
            self._corked.append(data)
            return
        transport = self.transport
        if (
            isinstance(transport, tcp.Connection)
            and not transport.TLS
            and transport.connected
            and not transport.disconnecting
            and not transport.dataBuffer
            and not transport._tempDataBuffer
        ):
            # Nothing is waiting to be written before these bytes: hand them
            # to the socket now.  Only what it does not take goes through
            # Twisted's buffer (and costs a turn and two epoll_ctl calls).
            try:
                sent = transport.socket.send(data)
            except BlockingIOError:
                sent = 0
            except OSError:
                sent = 0  # Twisted's own write reports the error and closes
            if sent == len(data):
                return
            data = data[sent:]
        transport.write(data)
