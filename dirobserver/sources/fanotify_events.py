"""
The records a fanotify group reads, as events: the parsing of
C{struct fanotify_event_metadata} and its info records
(L{dirobserver.sources.fanotify_calls} has their layouts), and the split of
a merged event into inotify's one-event-per-change.

fanotify merges the events of one name that were not read yet
(C{FAN_CREATE | FAN_CLOSE_WRITE} for a small file written at once); the
sinks (the section's complete-files table, the tree) expect inotify's
separate events, in the order they happened, so L{split} gives them back.
"""

from __future__ import annotations

from collections.abc import Iterable

from dirobserver.sources.fanotify_calls import (
    FAN_EVENT_INFO_TYPE_DFID,
    FAN_EVENT_INFO_TYPE_DFID_NAME,
    FAN_EVENT_INFO_TYPE_FID,
    FAN_ONDIR,
    FID_HEAD,
    INFO_HEADER,
    METADATA,
    handle_key,
)
from dirobserver.sources.masks import (
    IN_ATTRIB,
    IN_CLOSE_WRITE,
    IN_CREATE,
    IN_DELETE,
    IN_MODIFY,
    IN_MOVED_FROM,
    IN_MOVED_TO,
    IN_OPEN,
)

#: The bits of one merged event, in the order the changes happen.
_ORDER = (IN_CREATE, IN_MOVED_TO, IN_OPEN, IN_MODIFY, IN_ATTRIB, IN_CLOSE_WRITE, IN_MOVED_FROM,
          IN_DELETE)
#: One parsed event: the key of its directory (or of the object itself for
#: a self event), the entry's name (b"" for none), the mask.
Event = tuple[bytes, bytes, int]


def parse(data: bytes) -> Iterable[Event]:
    """
    The events of one read, as the kernel lays them out: metadata, then
    info records (C{DFID_NAME}: fsid, file handle, name; C{DFID}/C{FID}:
    fsid, file handle).  The overflow event comes with no record: key b"".
    """
    size = len(data)
    offset = 0
    while offset + METADATA.size <= size:
        length, _version, _reserved, header, mask, _fd, _pid = METADATA.unpack_from(data, offset)
        if length < METADATA.size:
            return  # not an event of this layout: stop rather than loop
        end = offset + length
        at = offset + header
        key = name = b""
        while at + INFO_HEADER.size <= end:
            kind, _pad, record = INFO_HEADER.unpack_from(data, at)
            if record <= 0:
                break
            if kind in (FAN_EVENT_INFO_TYPE_DFID_NAME, FAN_EVENT_INFO_TYPE_DFID,
                        FAN_EVENT_INFO_TYPE_FID):
                fsid, handle_bytes, handle_type = FID_HEAD.unpack_from(data, at + 4)
                start = at + 4 + FID_HEAD.size
                key = handle_key(fsid, handle_type, data[start:start + handle_bytes])
                if kind == FAN_EVENT_INFO_TYPE_DFID_NAME:
                    name = data[start + handle_bytes:at + record].split(b"\0", 1)[0]
                    if name == b".":
                        name = b""
                break
            at += record
        yield key, name, mask
        offset = end


def split(mask: int) -> list[int]:
    """A merged mask as one mask per change, in order (each keeps C{IN_ISDIR})."""
    ondir = mask & FAN_ONDIR
    return [bit | ondir for bit in _ORDER if mask & bit]
