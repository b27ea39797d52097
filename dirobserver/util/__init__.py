"""
Generic mechanisms that know nothing of files or Redis: periodic work that
survives its failures, retry timing, a failure in a few words, plain counters, and the garbage
collector around bulk building.
"""
