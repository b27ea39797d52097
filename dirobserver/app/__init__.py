"""
The application: what twistd runs, and how it starts, reloads and ends.

 - L{tap}: the plugin's options and C{makeService};
 - L{observer}: the service tree (L{observer.DirObserver});
 - L{core}: the observer's core (L{core.ObserverService}): the watcher,
   the monitors and the work that involves every directory;
 - L{ordered_services}: children started in order, stopped in reverse;
 - L{reload}: SIGHUP; L{exits}: exit statuses, and a clean stop on
   SIGTERM/SIGINT;
 - L{script}: the historical command line;
 - L{embedded_redis} (with L{embedded_binary}, L{embedded_process} and
   L{embedded_probe}, what already listens at its address): the
   C{--embedded-redis} server.
"""
