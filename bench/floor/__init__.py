"""
The CPU-floor experiment (``python -m bench.floor``): what the least work
per file costs on this machine, from inotifywait to minimal Python loops
(L{bench.floor.rungs}), against which the observer's figures are read.  An
experiment beside the benchmark, on its harness and the testing kit.
"""
