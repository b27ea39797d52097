"""
The testing kit: what the tests, the benchmark (C{bench}) and the soak
(C{soak}) share to run real processes and wait for what they do.

Modules by concern:

 - L{tests.kit.processes}: free ports, child processes (own session, death
   signal), the registry of what must not outlive a test run, the
   benchmark's L{Resources}, scratch directories, the twistd command;
 - L{tests.kit.redis_server}: a real valkey-server, and popping events;
 - L{tests.kit.sentinel}: a real Sentinel set (master, replica, Sentinels);
 - L{tests.kit.tls}: certificates and Debian's TLS-capable redis-server;
 - L{tests.kit.observer}: the daemon as a twistd subprocess;
 - L{tests.kit.worker}: the worker daemon (C{dirobserver-worker}) likewise;
 - L{tests.kit.config}: the observer's INI file;
 - L{tests.kit.metrics}: the daemon's /metrics, scraped and parsed;
 - L{tests.kit.waiting}: waiting for a condition (threads and reactor);
 - L{tests.kit.cases}: trial cases for the parts run in-process;
 - L{tests.kit.log_capture}: the observer's log events, in-process;
 - L{tests.kit.ops_stand_ins}: the core as L{dirobserver.ops} reads it;
 - L{tests.kit.logs_tap}: a twistd subcommand for the log options' tests.

The names most tests use are exported here.  Nothing in the kit starts a
process at import time, and the modules that need the reactor, pytest or
cryptography (cases, tls, ops_stand_ins) are imported only by those who use
them.
"""

from .config import ini_section, ini_text, redis_at, section, write_config
from .metrics import metric_samples, scrape_metrics
from .observer import READY_MARK, LoggedObserver, Observer
from .processes import (
    REPO_ROOT,
    Resources,
    child_env,
    code_under_test,
    drop_root_file_access,
    free_port,
    kill_leftovers,
    remove_tree,
    scratch_root,
    spawn,
    stop_process,
    twistd_command,
    twistd_path,
)
from .redis_server import RedisServer, command_calls, connections_received, drain, pop_raw, valkey_server_binary
from .waiting import wait_until

__all__ = [
    "READY_MARK", "REPO_ROOT", "LoggedObserver", "Observer", "RedisServer", "Resources",
    "child_env", "code_under_test", "command_calls", "connections_received",
    "drain", "drop_root_file_access", "free_port", "ini_section",
    "ini_text", "kill_leftovers", "metric_samples", "pop_raw", "redis_at", "remove_tree", "scratch_root",
    "scrape_metrics", "section",
    "spawn", "stop_process", "twistd_command", "twistd_path", "valkey_server_binary", "wait_until",
    "write_config",
]
