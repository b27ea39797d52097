"""
The one Redis protocol: RESP2, pipelined, on txredisapi's protocol class.

Every connection speaks it: the writer's to the master, a Sentinel's
questions, a node's C{ROLE} check, the C{+switch-master} subscription.

At everyday rates (one file every millisecond) every file is a round of its
own, and the cost of a round was mostly machinery, not work: txredisapi
builds a Deferred, a queue entry and a line-by-line parse for each of the
four commands of a transaction.  L{RespProtocol} subclasses
C{txredisapi.RedisProtocol} (its connection state, C{whenConnected}, its
error types, its command methods) and replaces, through the public methods
of a Twisted protocol, only the path of commands and replies:

 - L{RespProtocol.execute_command} sends one command and returns a Deferred
   of its reply (the handshake, C{LLEN}, C{ROLE}...);
 - L{RespProtocol.pipeline} sends several commands in one write and returns
   ONE Deferred of the list of their replies (a round of transactions);
 - L{RespProtocol.cork} / L{RespProtocol.uncork} make everything sent
   between them leave in one write;
 - replies are parsed from the received bytes with C{bytes.find}, no line
   splitting, and handed to waiters in order; a reply nobody waits for is a
   pub/sub message, handed to L{RespProtocol.on_push}.

Commands are encoded here (L{encode_command}), and written with the
transport's public C{write}/C{writeSequence} only.

Replies are what txredisapi returns with C{charset="utf-8"} and
C{convertNumbers=False}: status replies and bulk strings as C{str} (bytes
that are not UTF-8 stay C{bytes}), integers as C{int}, arrays as lists, nil
as None, and error replies as L{txredisapi.ResponseError} (inside an array
as an element, at the top a failed Deferred); a lost connection fails every
waiting Deferred with L{txredisapi.ConnectionError}.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import txredisapi
from twisted.internet import defer, protocol
from twisted.python.failure import Failure
from txredisapi import ConnectionError, ResponseError

_CRLF = b"\r\n"

#: Marks "not enough bytes yet" in the parser (None is a valid reply).
_INCOMPLETE = object()

#: The first byte of a bulk string (C{$}), as C{data[i]} gives it.
_BULK = ord("$")

#: Bytes a connection may write per reactor turn.  Twisted's default
#: (128 KiB) makes a 10,000-event LPUSH take a dozen turns to leave, and the
#: next round (another directory's one new file) waits behind it.
SEND_LIMIT = 4 * 1024 * 1024
def encode_command(args: Sequence[Any]) -> bytes:
    """One command in RESP (an array of bulk strings)."""
    try:
        # The usual case (events are bytes already): one comprehension.
        body = b"".join([b"$%d\r\n%s\r\n" % (len(arg), arg) for arg in args])
    except TypeError:  # a str or an int among them (the command's name, say)
        # Only those are converted: the events of an LPUSH or the entries
        # of an HSET after the name are bytes, thousands of them.
        args = [arg if isinstance(arg, bytes) else _bytes(arg) for arg in args]
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
        items: list[Any] = []
        append, find, length = items.append, data.find, len(data)
        for _ in range(count):
            if after < length and data[after] == _BULK:
                # A bulk string, read here: the items of an HMGET or an
                # HSCAN reply, a thousand at a time, without a call each.
                end = find(_CRLF, after)
                if end < 0:
                    return _INCOMPLETE, pos
                size = int(data[after + 1:end])
                start = end + 2
                if size < 0:
                    append(None)
                    after = start
                    continue
                after = start + size + 2
                if length < after:
                    return _INCOMPLETE, pos
                raw = data[start:start + size]
                try:
                    append(raw.decode("utf-8"))
                except UnicodeDecodeError:
                    append(raw)
                continue
            item, after = parse_reply(data, after)
            if item is _INCOMPLETE:
                return _INCOMPLETE, pos
            append(item)
        return items, after
    if kind == b"-":
        return ResponseError(line.decode("utf-8", "replace")), after
    raise ValueError(f"not a Redis reply: {data[pos:pos + 20]!r}")


def raise_send_limit(transport: Any) -> None:
    """
    Let C{transport} write L{SEND_LIMIT} bytes per reactor turn.

    C{SEND_LIMIT} is a plain attribute of Twisted's C{FileDescriptor} (the
    TCP and Unix transports) with no public setter; a TLS transport is a
    protocol wrapper with no limit of its own, so the limit is set on the
    transport it wraps (its C{transport}).  This is the one place that
    reaches through it.
    """
    inner = getattr(transport, "transport", None) or transport
    if hasattr(inner, "SEND_LIMIT"):
        inner.SEND_LIMIT = SEND_LIMIT


class RespProtocol(txredisapi.RedisProtocol):
    """
    A pipelined RESP2 client connection (see the module docstring).

    Built without a password or a database, txredisapi's C{connectionMade}
    sends nothing: the handshake is the caller's
    (L{dirobserver.redis.attempt}).

    @ivar factory: the factory that built it.
    @ivar lost_reason: why the connection was lost (a failed TLS handshake
        shows here, while the commands waiting only see "Lost connection").
    @ivar handshake_replies: the replies to the handshake's steps, in order
        (see L{dirobserver.redis.attempt}).
    @ivar on_push: called with each reply nobody waits for (a pub/sub
        message, C{["message", channel, data]}).
    """

    factory: Any = None
    lost_reason: Failure | None = None
    handshake_replies: list[Any] = []
    on_push: Callable[[Any], None] | None = None

    def __init__(self) -> None:
        # Replies decode as txredisapi's do with these options.
        super().__init__(charset="utf-8", convertNumbers=False)
        self._corked: list[bytes] | None = None
        self._buffer = b""
        #: per expected reply, in order: (Deferred, how many replies it
        #: collects (0: one reply, not a list), the replies collected)
        self._waiting: deque[list[Any]] = deque()
        self._gone: Failure | None = None

    # -- commands ------------------------------------------------------------

    def execute_command(self, *args: Any, **kwargs: Any) -> defer.Deferred:
        """
        Send one command; the Deferred fires with its reply.

        @param kwargs: C{post_proc}, as txredisapi's command methods pass it
            (applied to the reply).
        """
        d: defer.Deferred = defer.Deferred()
        if self._gone is not None or not self.transport:
            d.errback(ConnectionError("Not connected"))
            return d
        self._waiting.append([d, 0, None])
        self._send(encode_command(args))
        post_proc = kwargs.get("post_proc")
        if callable(post_proc):
            d.addCallback(post_proc)
        return d

    def pipeline(self, commands: Sequence[Sequence[Any]]) -> defer.Deferred:
        """
        Send C{commands} in one write; the Deferred fires with the list of
        their replies (error replies as L{ResponseError} elements).
        """
        d: defer.Deferred = defer.Deferred()
        if self._gone is not None or not self.transport:
            d.errback(ConnectionError("Not connected"))
            return d
        if not commands:
            d.callback([])
            return d
        self._waiting.append([d, len(commands), []])
        self._send(b"".join([encode_command(c) for c in commands]))
        return d

    def cork(self) -> None:
        """Hold what is sent until L{uncork}: a round's commands leave in one write."""
        if self._corked is None:
            self._corked = []

    def uncork(self) -> None:
        """Send what was held since L{cork}, in one write."""
        corked, self._corked = self._corked, None
        if corked:
            self.transport.writeSequence(corked)

    def _send(self, data: bytes) -> None:
        if self._corked is not None:
            self._corked.append(data)
        else:
            self.transport.write(data)

    # -- Twisted -------------------------------------------------------------

    def whenDisconnected(self) -> defer.Deferred:
        """Fires with this protocol once the connection is lost (at once if it is)."""
        if self._gone is not None:
            return defer.succeed(self)
        return super().whenDisconnected()

    def dataReceived(self, data: bytes) -> None:
        buffer = self._buffer + data if self._buffer else data
        pos, size, waiting = 0, len(buffer), self._waiting
        try:
            while pos < size:
                reply, pos_after = parse_reply(buffer, pos)
                if reply is _INCOMPLETE:
                    break
                pos = pos_after
                if waiting:
                    _deliver(waiting, reply)
                elif self.on_push is not None:
                    self.on_push(reply)
        except ValueError:
            # Not RESP: whatever this is, it is not a usable Redis.
            self._buffer = b""
            self.transport.abortConnection()
            return
        self._buffer = buffer[pos:] if pos < size else b""

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self._gone = reason
        self.lost_reason = reason
        self._corked = None
        # Whoever owns the connection hears of its loss (txredisapi fires
        # whenDisconnected) before the commands in flight fail: a round
        # failing for that reason is then resent, not taken for a refusal.
        super().connectionLost(reason)
        waiting, self._waiting = self._waiting, deque()
        for d, _count, _replies in waiting:
            d.errback(ConnectionError("Lost connection"))


def _deliver(waiting: deque, reply: Any) -> None:
    """Hand C{reply} to the first waiter (one command, or one of a pipeline)."""
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


class RespFactory(protocol.Factory):
    """Builds L{RespProtocol}s for an endpoint's C{connect}."""

    noisy = False
    # txredisapi's protocol may call these on its factory; with no password
    # and no database it never does.
    isLazy = False

    def buildProtocol(self, addr: Any) -> RespProtocol:
        proto = RespProtocol()
        proto.factory = self
        return proto

    def stopTrying(self) -> None:
        """Nothing to stop: reconnecting is L{dirobserver.redis.reconnect}'s."""

    def connectionError(self, why: str) -> None:
        """Not called: the protocol is given no AUTH or SELECT to fail."""
