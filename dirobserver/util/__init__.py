"""
Generic mechanisms that know nothing of files or Redis: periodic work that
survives its failures, retry timing, plain counters, the garbage collector
around bulk building, and the rule for when a changing thing is quiet.
"""
