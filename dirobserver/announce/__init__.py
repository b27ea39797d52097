"""
Announcing files: one section's monitor (C{monitor}) and how its names become
events in its queue (C{announcer}, C{event}); complete files (C{complete_files})
and the table of files waiting to settle (C{settle}); listings (C{listing}),
the requests they cover (C{listing_requests}), the line they wait in for
their turn (C{listing_line}) and their scans (C{scan}).
"""
