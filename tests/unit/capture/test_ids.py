"""Request and session ids: unique, the shape of a ``uuid4().hex``, new in a forked child."""

from __future__ import annotations

import os
import string

import pytest

from exporter.capture.ids import UniqueIds


def test_ids_are_32_hex_characters_and_never_repeat():
    ids = UniqueIds()
    made = [ids.new() for _ in range(20000)]
    assert len(set(made)) == len(made)
    assert all(len(i) == 32 and set(i) <= set(string.hexdigits.lower()) for i in made)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork only")
def test_a_forked_child_draws_its_own_prefix():
    ids = UniqueIds()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: send its next id and leave at once
        os.write(write, ids.new().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child_id = os.read(read, 64).decode()
    os.close(read)
    os.close(write)
    assert len(child_id) == 32
    assert child_id[:16] != ids.new()[:16]
