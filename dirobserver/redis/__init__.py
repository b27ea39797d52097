"""
Redis: everything that talks to it.

 - C{writer}: the batching writer the rest of the observer pushes events to;
   C{held_events} (what it holds per queue), C{held_bound} (C{max_held}),
   C{rounds} (delivery in rounds, one transaction per queue), C{queue_types}
   (list and stream), C{refusals} (what a refused transaction means),
   C{in_doubt} (whether an unanswered batch with a record ran), C{record}
   (the record of what was announced);
 - C{connection}: the one connection to the master, kept open by
   C{reconnect}'s loop, each attempt one C{attempt} (connect and handshake),
   routed through C{sentinel} when configured, with C{tls};
 - C{protocol}: the one RESP protocol every connection speaks.
"""
