"""
Generic mechanisms that know nothing of files or Redis: periodic work that
survives its failures, retry timing, plain counters, and the garbage
collector around bulk building.
"""
