"""
The event vocabulary every source speaks: inotify's mask bits.

The kernel's inotify defines them (C{<sys/inotify.h>}); the polling scanner
and the walks of a tree produce the same bits for what they find, so a sink
reads one vocabulary whatever the source.  The values are the kernel's ABI,
written out here rather than borrowed from C{twisted.internet.inotify}.
"""

IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_OPEN = 0x00000020
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_UNMOUNT = 0x00002000
#: The kernel queue was full: events were dropped (watch descriptor -1).
IN_Q_OVERFLOW = 0x00004000
#: The watch is over (after IN_DELETE_SELF, IN_UNMOUNT or its removal).
IN_IGNORED = 0x00008000
#: A flag of the watch: refuse to watch anything but a directory.
IN_ONLYDIR = 0x01000000
#: The entry an event names is a directory.
IN_ISDIR = 0x40000000

#: What a monitored directory is watched for: entries appearing in it, and the
#: directory itself going away.  (C{IN_ONLYDIR}: refuse to watch a file.)
WATCH_MASK = IN_CREATE | IN_MOVED_TO | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR


def ended_why(mask: int) -> str:
    """Why a directory's watch ended (its last event's C{mask}), in words: "was deleted"..."""
    if mask & IN_DELETE_SELF and mask & IN_MOVE_SELF:
        return "was replaced by another directory"  # a poller's word for it
    if mask & IN_DELETE_SELF:
        return "was deleted"
    if mask & IN_MOVE_SELF:
        return "was moved or renamed"
    if mask & IN_UNMOUNT:
        return "was unmounted"
    return "is no longer watched"
