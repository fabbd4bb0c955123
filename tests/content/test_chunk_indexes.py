"""Chunk indexes made by rescans, at central and at a DP node, in the same read as the hashes."""
import hashlib
import os

from portal.core.chunks import index_bytes
from portal.core.chunkstore import ChunkStore
from tests.factories import write_file

MB = 1024 * 1024


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_central_rescan_indexes_big_files_and_keeps_it_incremental(central, rescan):
    big, small = os.urandom(2 * MB), os.urandom(1000)
    write_file(central.root, "Images/big.wim", big)
    write_file(central.root, "Images/small.wim", small)
    rescan(central)
    with ChunkStore(central.root) as chunks:
        assert chunks.get(sha(big)) == index_bytes(big)
        assert chunks.known() == {sha(big)}  # a small file is sent whole: no index
        chunks.forget([sha(big)])  # as after an upgrade from before indexes
    job = rescan(central)
    assert job.files_total == 1  # read again for its index, nothing else
    assert rescan(central).files_total == 0
    with ChunkStore(central.root) as chunks:
        assert chunks.has(sha(big))


def test_indexes_of_versions_no_dp_holds_are_pruned(central, rescan):
    old, new = os.urandom(2 * MB), os.urandom(2 * MB)
    write_file(central.root, "Images/a.wim", old)
    rescan(central)
    write_file(central.root, "Images/a.wim", new)
    rescan(central)
    with ChunkStore(central.root) as chunks:
        assert chunks.known() == {sha(new)}


def test_a_node_scan_indexes_what_it_hashes(node):
    data = os.urandom(3 * MB)
    write_file(node.root, "Images/hand-copied.wim", data)
    node.inventory()
    with ChunkStore(node.root, locate=True) as chunks:
        assert chunks.get(sha(data)) == index_bytes(data)
        assert len(chunks.locate(index_bytes(data).digests)) == len(set(index_bytes(data).digests))
    os.remove(os.path.join(node.root, "Images/hand-copied.wim"))
    node.inventory()
    with ChunkStore(node.root, locate=True) as chunks:
        assert chunks.known() == set()
