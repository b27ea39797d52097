"""
Configuration: the generic INI layer, the table of keys and the kinds of
their values, the Redis settings, file-name filters, and the reference
generated from the table.  Standard library only (no Twisted), so a file can
be checked anywhere.
"""
