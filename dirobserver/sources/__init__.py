"""
Where events come from: the interface every source implements, inotify,
polling, trees of directories, filesystem detection, and the liveness probe
of the inotify mechanism.
"""
