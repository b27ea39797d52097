"""
Generic mechanisms that know nothing of files or Redis.

  - L{periodic}: periodic work that survives its own failures;
  - L{backoff}: retry timing, and causes said once per change;
  - L{failures}: a failure in a few words, for a log line;
  - L{stats}: plain counters and histograms, read by the metrics;
  - L{quiet}: the rule for when a changing thing has been quiet long enough;
  - L{gc_pause}: the garbage collector around bulk building;
  - L{reactor}: the reactor the daemon runs in, as one type;
  - L{words}: counts with the noun that agrees ("1 directory").
"""
