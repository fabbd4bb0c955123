"""DEPOT_CHUNK_INDEXES=0: rescans only hash; a copy to a DP node indexes the file it sends."""
import os

import pytest

from portal.core.chunkstore import ChunkStore
from tests.factories import write_file
from tests.helpers import copy_one

MB = 1024 * 1024


@pytest.fixture
def config_overrides():
    return {"DEPOT_CHUNK_INDEXES": False}


def test_without_indexes_from_rescans_a_copy_makes_the_one_it_needs(central, rescan, admin,
                                                                   seattle, node, work):
    data = os.urandom(2 * MB)
    write_file(central.root, "Images/a.wim", data)
    rescan(central)
    with ChunkStore(central.root) as chunks:
        assert chunks.known() == set()
    job = copy_one(admin, work, "Images/a.wim", seattle)
    assert job.state == "succeeded", job.error
    with open(node.file("Images/a.wim"), "rb") as fh:
        assert fh.read() == data
    with ChunkStore(central.root) as chunks:
        assert len(chunks.known()) == 1
