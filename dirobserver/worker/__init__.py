"""
The worker: C{twistd dirobserver-worker} runs a command on each announced
file, once, and files it in done/ (or deletes it) or failed/.

 - C{tap}: the options (checked before anything starts) and C{makeService};
 - C{service}: the service tree, the jobs, the one log line per file, the stop;
 - C{queues}: taking events crash-safely (a list: C{BLMOVE} into a processing
   list of the worker, a claim key, the takeover of a dead worker's list; a
   stream: a consumer group, C{XACK}, C{XAUTOCLAIM}), on C{redis_link}'s
   connections;
 - C{claim}: a file claimed by an atomic rename into a private directory
   whose name ends with C{.working} (which the observer ignores);
 - C{run}: the command in its own process group, with its timeout;
 - C{filing}: done/, failed/, deletion; never an overwrite, never a loss.
"""
