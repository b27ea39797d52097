"""
The events of a tree: a name relative to the top becomes the directory that
holds the file and its plain name; the encoders of sub-directories are kept
within a bound.
"""

from __future__ import annotations

import json
import os

from dirobserver.announce.event import TreeEncoder, decode_name


def event(encoder: TreeEncoder, path: str) -> dict:
    return json.loads(encoder.encode(path, "created", 12.5))


def test_the_directory_is_the_one_that_holds_the_file():
    encoder = TreeEncoder("/srv/in")
    assert event(encoder, "top.csv") == {"directory": "/srv/in", "filename": "top.csv",
                                         "event": "created", "event_timestamp": 12.5}
    deep = event(encoder, "a/b c/f.csv")
    assert (deep["directory"], deep["filename"]) == ("/srv/in/a/b c", "f.csv")
    assert os.path.join(deep["directory"], deep["filename"]) == "/srv/in/a/b c/f.csv"


def test_undecodable_names_in_sub_directories_come_back_exactly():
    encoder = TreeEncoder("/srv/in")
    path = decode_name(b"\xffdir/\xfe.dat")
    got = event(encoder, path)
    assert os.fsencode(os.path.join(got["directory"], got["filename"])) == b"/srv/in/\xffdir/\xfe.dat"


def test_a_bounded_number_of_sub_directory_encoders_is_kept():
    encoder = TreeEncoder("/")
    encoder.KEPT = 3
    for i in range(10):
        assert event(encoder, f"d{i}/f")["directory"] == f"/d{i}"
    assert event(encoder, "d9/g")["directory"] == "/d9"
    assert event(encoder, "d1/g")["directory"] == "/d1"  # made again after it was dropped
    assert len(encoder._encoders) == 3
