"""twistd plugin dropin: ``twistd dirobserver --config=PATH`` and ``twistd dirobserver-worker``."""

from twisted.application.service import ServiceMaker

dirobserver = ServiceMaker(
    "dirobserver",
    "dirobserver.app.tap",
    "Watch directories with inotify and push file events to Redis lists.",
    "dirobserver",
)

dirobserver_worker = ServiceMaker(
    "dirobserver-worker",
    "dirobserver.worker.tap",
    "Run a command on each file announced in a section's queue, once; file it in done/ or failed/.",
    "dirobserver-worker",
)
