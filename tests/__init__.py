"""
dirobserver's tests: unit tests per module, and end-to-end tests that run
real servers and the real daemon as subprocesses.  What they share is the
kit (L{tests.kit}), which the benchmark and the soak use too.
"""
