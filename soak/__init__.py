"""
The chaos soak (``python -m soak``, ``make soak``): a correctness tool, not a
benchmark.  The real daemon, a real Redis (one server or a Sentinel set),
one section per mode the observer has, producers, consumers and random
faults; then a check that every file that was due was announced, none early.

Modules: L{soak.__main__} (the run), L{soak.report} (its output and
report), L{soak.source} (C{--source}), L{soak.kinds} (the sections),
L{soak.producer} and L{soak.consumer} (producers and consumers; the
worker's section: L{soak.working}), L{soak.faults} (the fault table and
its lanes: L{soak.process_faults}, L{soak.directory_faults}),
L{soak.daemon} (the observer the faults hit), L{soak.servers} (the Redis
side), L{soak.ledger} (the record of every file), L{soak.checker} (the
checker), L{soak.once} and L{soak.record_watch} (the duplicates of the
sections that announce once), L{soak.backlog} (a queue past its limit).
Processes, servers and the daemon come from the testing kit
(L{tests.kit}).
"""
