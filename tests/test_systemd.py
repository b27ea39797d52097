"""
L{dirobserver.ops.systemd}: real datagrams on real C{AF_UNIX} sockets, the
watchdog driven by a L{task.Clock}.
"""

from __future__ import annotations

import os
import socket
import tempfile
import time

from twisted.internet import task
from twisted.trial import unittest

from dirobserver.ops.systemd import Notifier, SystemdService, child_environment


class Listener:
    """A bound datagram socket standing in for systemd's notify socket."""

    def __init__(self, address: str | bytes) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.setblocking(False)

    def messages(self) -> list[dict[str, str]]:
        """Every datagram received so far, each as a dict of its lines."""
        result = []
        while True:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                return result
            result.append(dict(line.split("=", 1) for line in data.decode().split("\n")))

    def close(self) -> None:
        self.sock.close()


class NotifierTests(unittest.TestCase):
    def listen_path(self) -> tuple[Listener, str]:
        directory = tempfile.mkdtemp(prefix="notify-")
        self.addCleanup(os.rmdir, directory)
        path = os.path.join(directory, "notify.sock")
        listener = Listener(path)
        self.addCleanup(os.unlink, path)
        self.addCleanup(listener.close)
        return listener, path

    def notifier(self, environ: dict[str, str]) -> Notifier:
        notifier = Notifier(environ)
        self.addCleanup(notifier.close)
        return notifier

    def test_messages_reach_a_path_socket(self):
        listener, path = self.listen_path()
        notifier = self.notifier({"NOTIFY_SOCKET": path})
        self.assertTrue(notifier.enabled)
        self.assertTrue(notifier.ready())
        self.assertTrue(notifier.ready(status="watching 2 directories"))
        self.assertTrue(notifier.status("Redis down\nholding 3 events"))
        self.assertTrue(notifier.stopping())
        self.assertEqual(
            listener.messages(),
            [
                {"READY": "1"},
                {"READY": "1", "STATUS": "watching 2 directories"},
                # A newline in a value would start another key: folded.
                {"STATUS": "Redis down holding 3 events"},
                {"STOPPING": "1"},
            ],
        )

    def test_reloading_carries_the_monotonic_clock(self):
        listener, path = self.listen_path()
        notifier = self.notifier({"NOTIFY_SOCKET": path})
        before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        notifier.reloading()
        after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        [message] = listener.messages()
        self.assertEqual(message["RELOADING"], "1")
        self.assertTrue(before <= int(message["MONOTONIC_USEC"]) <= after, (before, message, after))

    def test_abstract_socket_name(self):
        """C{@name} is the abstract address C{\\0name}."""
        name = f"dirobserver-test-{os.getpid()}-{id(self)}"
        listener = Listener(b"\0" + name.encode())
        self.addCleanup(listener.close)
        notifier = self.notifier({"NOTIFY_SOCKET": "@" + name})
        notifier.ready()
        notifier.watchdog()
        self.assertEqual(listener.messages(), [{"READY": "1"}, {"WATCHDOG": "1"}])

    def test_no_socket_is_a_no_op(self):
        notifier = self.notifier({})
        self.assertFalse(notifier.enabled)
        self.assertIsNone(notifier.watchdog_interval)
        for call in (notifier.ready, notifier.stopping, notifier.reloading, notifier.watchdog):
            self.assertFalse(call())
        self.assertFalse(notifier.status("x"))
        self.assertEqual(notifier.failures, 0)
        self.assertIsNone(notifier._socket)

    def test_send_failure_is_logged_once_per_outage_and_never_raises(self):
        from twisted.logger import globalLogPublisher

        events: list[dict] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        directory = tempfile.mkdtemp(prefix="notify-")
        self.addCleanup(os.rmdir, directory)
        path = os.path.join(directory, "notify.sock")
        notifier = self.notifier({"NOTIFY_SOCKET": path})

        def warnings() -> list[dict]:
            return [e for e in events if e.get("log_namespace", "").startswith("dirobserver.ops.systemd")]

        for _ in range(3):  # nobody listens: every send fails
            self.assertFalse(notifier.ready())
        self.assertEqual(notifier.failures, 3)
        self.assertEqual(len(warnings()), 1, warnings())
        self.assertIn("Cannot notify systemd", warnings()[0]["log_format"])

        listener = Listener(path)  # systemd is back
        self.assertTrue(notifier.status("ok"))
        listener.close()
        os.unlink(path)  # and gone again: a second outage, a second line
        self.assertFalse(notifier.watchdog())
        self.assertFalse(notifier.watchdog())
        self.assertEqual(notifier.failures, 5)
        self.assertEqual(len(warnings()), 2, warnings())

    def test_watchdog_interval_is_half_of_watchdog_usec(self):
        env = {"NOTIFY_SOCKET": "/nonexistent", "WATCHDOG_USEC": "30000000"}
        self.assertEqual(self.notifier(env).watchdog_interval, 15.0)
        env["WATCHDOG_PID"] = str(os.getpid())
        self.assertEqual(self.notifier(env).watchdog_interval, 15.0)

    def test_watchdog_of_another_process_is_not_ours(self):
        env = {"NOTIFY_SOCKET": "/nonexistent", "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid() + 1)}
        self.assertIsNone(self.notifier(env).watchdog_interval)

    def test_bad_watchdog_values_disable_it(self):
        for usec in ("", "0", "-5", "thirty"):
            env = {"NOTIFY_SOCKET": "/nonexistent", "WATCHDOG_USEC": usec}
            self.assertIsNone(self.notifier(env).watchdog_interval, usec)

    def test_the_environment_is_read_once(self):
        """The caller may drop the variables from its environment afterwards."""
        listener, path = self.listen_path()
        env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000"}
        notifier = self.notifier(env)
        env.clear()
        self.assertEqual(notifier.watchdog_interval, 1.0)
        self.assertTrue(notifier.ready())
        self.assertEqual(listener.messages(), [{"READY": "1"}])

    def test_child_environment_drops_the_protocol_variables(self):
        env = {"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "1", "WATCHDOG_PID": "2", "PATH": "/bin"}
        self.assertEqual(child_environment(env), {"PATH": "/bin"})
        self.assertIn("NOTIFY_SOCKET", env)  # the caller's mapping is untouched


class SystemdServiceTests(unittest.TestCase):
    def setUp(self) -> None:
        directory = tempfile.mkdtemp(prefix="notify-")
        self.addCleanup(os.rmdir, directory)
        self.path = os.path.join(directory, "notify.sock")
        self.listener = Listener(self.path)
        self.addCleanup(os.unlink, self.path)
        self.addCleanup(self.listener.close)
        self.clock = task.Clock()
        self.alive = True

    def service(self, **extra: str) -> SystemdService:
        env = {"NOTIFY_SOCKET": self.path, **extra}
        return SystemdService(Notifier(env), lambda: self.alive, self.clock)

    def test_watchdog_every_half_interval(self):
        service = self.service(WATCHDOG_USEC="1000000")
        service.startService()
        self.assertEqual(self.listener.messages(), [])  # nothing before the first interval
        self.clock.advance(0.5)
        self.clock.advance(0.5)
        self.assertEqual(self.listener.messages(), [{"WATCHDOG": "1"}] * 2)
        service.stopService()
        self.assertEqual(self.listener.messages(), [{"STOPPING": "1"}])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_no_watchdog_while_not_alive(self):
        service = self.service(WATCHDOG_USEC="1000000")
        service.startService()
        self.alive = False
        for _ in range(4):
            self.clock.advance(0.5)
        self.assertEqual(self.listener.messages(), [])
        self.assertEqual(service.skipped, 4)
        self.alive = True
        self.clock.advance(0.5)
        self.assertEqual(self.listener.messages(), [{"WATCHDOG": "1"}])
        self.assertEqual(service.beats, 1)
        service.stopService()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_a_failing_probe_does_not_stop_the_watchdog(self):
        service = self.service(WATCHDOG_USEC="1000000")
        calls = []

        def alive():
            calls.append(1)
            if len(calls) == 1:
                raise RuntimeError("probe broke")
            return True

        service._alive = alive
        service.startService()
        self.clock.advance(0.5)
        self.clock.advance(0.5)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(self.listener.messages(), [{"WATCHDOG": "1"}])
        service.stopService()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_watchdog_pid_of_another_process_disables_it(self):
        service = self.service(WATCHDOG_USEC="1000000", WATCHDOG_PID=str(os.getpid() + 1))
        service.startService()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(5)
        service.stopService()
        self.assertEqual(self.listener.messages(), [{"STOPPING": "1"}])

    def test_without_watchdog_only_stopping(self):
        service = self.service()
        service.startService()
        self.clock.advance(60)
        service.stopService()
        self.assertEqual(self.listener.messages(), [{"STOPPING": "1"}])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_unset_socket_sends_nothing_and_schedules_nothing(self):
        service = SystemdService(Notifier({"WATCHDOG_USEC": "1000000"}), lambda: True, self.clock)
        service.startService()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(5)
        service.stopService()
        self.assertEqual(self.listener.messages(), [])
