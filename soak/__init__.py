"""
The chaos soak (``python -m soak``, ``make soak``): a correctness tool, not a
benchmark.  The real daemon, a real Redis (one server or a Sentinel set),
one section per mode the observer has, producers, consumers and random
faults; then a check that every file that was due was announced, none early.

Modules: L{soak.__main__} (the run and its report), L{soak.kinds} (the
sections), L{soak.traffic} (producers and consumers), L{soak.faults} (the
faults and the daemon they hit), L{soak.servers} (the Redis side),
L{soak.ledger} (the checker).  Processes, servers and the daemon come from
the testing kit (L{tests.kit}).
"""
