"""
Where events come from: the interface every source implements and its error
(L{interface}: C{EventSource}, C{EventSink}, C{WatchError}), the event
vocabulary they all speak (L{masks}), inotify (L{inotify}, its system calls
in L{inotify_calls}), polling (L{polling}), trees of directories (L{tree},
L{tree_watches}), the one directory walker (L{walk}), which directory a path
leads to (L{identity}), filesystem detection (L{fstype}), fanotify (L{fanotify}: its system calls
in L{fanotify_calls}, its records in L{fanotify_events}, which sections
use it in L{fanotify_choice}), and the liveness probe (L{liveness}).
"""
