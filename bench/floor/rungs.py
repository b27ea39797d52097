"""
The small implementations L{bench.floor} measures, each run as a child:
``python -m bench.floor.rungs KIND DIRECTORY PORT QUEUE``.

Every one does the same job as the observer and nothing more: for every file
created in DIRECTORY, one C{LPUSH QUEUE <event JSON>} to the Redis on PORT,
and its reply read.  The event is made by the observer's own
L{dirobserver.announce.event.EventEncoder} and the command by its own
L{dirobserver.redis.protocol.encode_command}, so what differs between the kinds is the
loop around them only.  (Twisted modules are imported for those helpers and
for L{dirobserver.sources.inotify_calls.LibcInotify}; the C{epoll} kinds never run a reactor.)

Kinds:
 - C{epoll}: a plain C{select.epoll} loop over the inotify descriptor and
   the socket: each file costs two wake-ups, its inotify read and then
   Redis's reply;
 - C{epoll-lazy}: the same loop, but the socket is not watched for replies:
   they are read at the next inotify wake-up, or after L{LAZY_TIMEOUT} when
   nothing else comes, so each file costs one wake-up;
 - C{epoll-linger}: the lazy loop that also gathers: after a read that found
   files it stops watching the inotify descriptor for L{LINGER}, then reads
   what came meanwhile (and the replies) at once, so each read, send and
   reply serves every file of a linger (the observer's C{linger} design);
 - C{twisted}: the reactor, Twisted's own L{twisted.internet.inotify.INotify}
   and a bare L{Protocol} that writes the command and counts replies.

Events read together (a busy queue) go out as one variadic C{LPUSH}, as the
observer's writer batches them.  The child prints C{ready} once it watches
and is connected; on SIGTERM it prints one JSON line: C{files} pushed,
C{acked} (replied to), C{errors} (error replies) and C{turns} (passes of its
loop, i.e. returns from C{epoll_wait}).
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import struct
import sys
import time
from collections import deque

from dirobserver.announce.event import CREATED, EventEncoder, decode_name
from dirobserver.redis.protocol import encode_command
from dirobserver.sources.inotify_calls import LibcInotify
from dirobserver.sources.masks import IN_CREATE, IN_ISDIR, IN_MOVED_TO, IN_ONLYDIR

#: Seconds a reply may wait for the next inotify wake-up in C{epoll-lazy}.
LAZY_TIMEOUT = 0.005
#: Seconds C{epoll-linger} gathers for: the observer's default C{linger}.
LINGER = 0.005
_MASK = IN_CREATE | IN_MOVED_TO | IN_ONLYDIR
_HEADER = struct.Struct("=iIII")


class _Stop(Exception):
    """Raised by the SIGTERM handler to leave the C{epoll} loop."""


def _stop(signum: int, frame: object) -> None:
    raise _Stop()


class Counts:
    """What a child did; printed as JSON when it stops."""

    def __init__(self) -> None:
        self.files = self.acked = self.errors = self.turns = 0
        self._in_flight: deque[int] = deque()  # files per command not yet answered
        self._partial = b""

    def sent(self, files: int) -> None:
        self.files += files
        self._in_flight.append(files)

    def waiting(self) -> bool:
        return bool(self._in_flight)

    def replies(self, data: bytes) -> None:
        """Account for received bytes (each reply to LPUSH is one line)."""
        lines = (self._partial + data).split(b"\r\n")
        self._partial = lines.pop()
        for line in lines:
            self.acked += self._in_flight.popleft()
            self.errors += line[:1] == b"-"

    def report(self) -> None:
        out = {"files": self.files, "acked": self.acked, "errors": self.errors, "turns": self.turns}
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()


def _names(data: bytes) -> list[str]:
    """The names of the entries (not directories) one inotify read announces."""
    names, offset, size = [], 0, len(data)
    while offset + 16 <= size:
        _wd, mask, _cookie, length = _HEADER.unpack_from(data, offset)
        start = offset + 16
        offset = start + length
        if mask & (IN_CREATE | IN_MOVED_TO) and not mask & IN_ISDIR:
            names.append(decode_name(data[start:offset].rstrip(b"\0")))
    return names


def run_epoll(directory: str, port: int, queue: str, lazy: bool, linger: float = 0.0) -> None:
    """The C{epoll}, C{epoll-lazy} and C{epoll-linger} kinds (see the module docstring)."""
    calls = LibcInotify()
    ifd = calls.init()
    calls.add_watch(ifd, os.fsencode(directory), _MASK)
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setblocking(False)
    sfd = sock.fileno()
    poller = select.epoll()
    poller.register(ifd, select.EPOLLIN)
    # Lazy: the socket is in the set only to take what a send left over.
    reading = 0 if lazy else select.EPOLLIN
    poller.register(sfd, reading)
    encode = EventEncoder(directory).encode
    key = queue.encode()
    counts = Counts()
    unsent, writing = b"", False

    def take_replies() -> None:
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            return
        if not data:
            raise ConnectionError("Redis closed the connection")
        counts.replies(data)

    def send(data: bytes) -> None:
        nonlocal unsent, writing
        unsent += data
        try:
            unsent = unsent[sock.send(unsent):]
        except BlockingIOError:
            pass
        if bool(unsent) != writing:
            writing = bool(unsent)
            poller.modify(sfd, reading | (select.EPOLLOUT if writing else 0))

    signal.signal(signal.SIGTERM, _stop)
    print("ready", flush=True)
    wake_at = 0.0  # napping until then (epoll-linger), inotify not watched
    try:
        while True:
            timeout = LAZY_TIMEOUT if lazy and counts.waiting() else -1
            if wake_at:
                timeout = max(wake_at - time.monotonic(), 0.0)
            ready = poller.poll(timeout)
            counts.turns += 1
            if wake_at and time.monotonic() >= wake_at:
                # The tick: watch inotify again (what gathered is readable
                # at once) and take the replies of the round before.
                wake_at = 0.0
                poller.modify(ifd, select.EPOLLIN)
                ready = poller.poll(0)
            if lazy and counts.waiting():
                # The replies of earlier files, whatever woke us.
                take_replies()
            for fd, events in ready:
                if fd == ifd:
                    names = _names(os.read(ifd, 256 * 1024))
                    if names:
                        now = time.time()
                        send(encode_command([b"LPUSH", key] + [encode(n, CREATED, now) for n in names]))
                        counts.sent(len(names))
                        if linger:
                            poller.modify(ifd, 0)
                            wake_at = time.monotonic() + linger
                    continue
                if events & select.EPOLLOUT:
                    send(b"")
                if events & ~select.EPOLLOUT:
                    take_replies()
    except _Stop:
        counts.report()


def run_twisted(directory: str, port: int, queue: str) -> None:
    """The C{twisted} kind (see the module docstring)."""
    from twisted.internet import inotify, protocol, reactor
    from twisted.python.failure import Failure
    from twisted.python.filepath import FilePath

    counts = Counts()
    encode = EventEncoder(directory).encode
    key = queue.encode()

    class Pusher(protocol.Protocol):
        def dataReceived(self, data: bytes) -> None:
            counts.replies(data)

    pusher: Pusher | None = None

    def on_event(_ignored: object, path: FilePath, mask: int) -> None:
        if mask & IN_ISDIR or pusher is None or pusher.transport is None:
            return
        name = decode_name(os.path.basename(path.path))
        pusher.transport.write(encode_command([b"LPUSH", key, encode(name, CREATED, time.time())]))
        counts.sent(1)

    # Count the reactor's turns (each ends one epoll_wait): a rung of the
    # measuring ladder may wrap the reactor's loop, the daemon never does.
    turn = reactor.doIteration  # type: ignore[attr-defined]

    def counted(delay: float | None) -> None:
        counts.turns += 1
        turn(delay)

    reactor.doIteration = counted  # type: ignore[attr-defined]
    connected = protocol.ClientCreator(reactor, Pusher).connectTCP("127.0.0.1", port)

    def start(proto: Pusher) -> None:
        nonlocal pusher
        pusher = proto
        proto.transport.setTcpNoDelay(True)  # type: ignore[union-attr]
        notifier = inotify.INotify(reactor=reactor)
        notifier.startReading()
        notifier.watch(FilePath(os.fsencode(directory)), mask=_MASK, callbacks=[on_event])
        print("ready", flush=True)

    def failed(failure: Failure) -> None:
        failure.printTraceback()
        reactor.stop()

    connected.addCallback(start).addErrback(failed)
    reactor.run()
    counts.report()


def main(argv: list[str]) -> int:
    kind, directory, port, queue = argv[0], argv[1], int(argv[2]), argv[3]
    if kind in ("epoll", "epoll-lazy", "epoll-linger"):
        run_epoll(directory, port, queue, lazy=kind != "epoll", linger=LINGER if kind == "epoll-linger" else 0.0)
    elif kind == "twisted":
        run_twisted(directory, port, queue)
    else:
        sys.stderr.write(f"unknown kind {kind!r}\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
