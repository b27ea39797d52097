"""twistd plugin dropin: ``twistd dirobserver --config=PATH``."""

from twisted.application.service import ServiceMaker

dirobserver = ServiceMaker(
    "dirobserver",
    "dirobserver.app.tap",
    "Watch directories with inotify and push file events to Redis lists.",
    "dirobserver",
)
