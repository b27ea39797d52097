"""
Announcing files: one section's monitor, complete files and the table of
files waiting to settle, listings and their scans, and the event value with
its JSON encoding.
"""
