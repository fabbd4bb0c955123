"""Chunk indexes: cut points that follow the content, a packed form that refuses what does not
add up, a store keyed by content, and positioned reads and writes on both of their paths."""
import os
import random
import threading

import pytest

from portal.core import fileio
from portal.core.chunks import (MAX_CHUNK, MIN_CHUNK, BadIndex, Chunker, ChunkIndex, index_bytes,
                                wants_index)
from portal.core.chunkstore import ChunkStore
from portal.core.hashing import hash_fd

MB = 1024 * 1024


def data_of(size: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(size)


@pytest.mark.parametrize("block", [1000, 64 * 1024, MB, 3 * MB + 7])
def test_cut_points_do_not_depend_on_how_the_file_is_read(block):
    data = data_of(5 * MB + 123)
    whole = index_bytes(data)
    chunker = Chunker()
    for start in range(0, len(data), block):
        chunker.update(data[start:start + block])
    assert chunker.finish() == whole
    assert whole.size == len(data)
    assert all(MIN_CHUNK <= n <= MAX_CHUNK for n in whole.lengths[:-1])


def test_a_chunker_closed_early_lets_go_of_its_thread():
    """A read that fails half way (or a cancelled job) closes the chunker: its thread ends, even
    with more blocks queued than it holds, and nothing waits forever."""
    chunker = Chunker()
    for _ in range(Chunker.QUEUE_BLOCKS + 4):
        chunker.update(data_of(MB))
    chunker.close()
    assert not chunker._thread.is_alive()
    chunker.close()  # twice is fine


def test_the_chunker_takes_a_copy_of_what_it_is_fed():
    """hash_entry reuses one read buffer: a block changed after update() must not change the
    index the thread computes from it."""
    data = data_of(3 * MB)
    chunker, buf = Chunker(), bytearray(MB)
    for start in range(0, len(data), MB):
        buf[:] = data[start:start + MB]
        chunker.update(memoryview(buf))
        buf[:] = b"\0" * MB
    assert chunker.finish() == index_bytes(data)


def test_an_insert_moves_the_cut_points_with_the_data():
    """Bytes inserted near the start: are nearly all later chunks still the same chunks?"""
    data = data_of(4 * MB)
    shifted = data[:100_000] + data_of(3_000, seed=2) + data[100_000:]
    before, after = set(index_bytes(data).digests), index_bytes(shifted).digests
    assert sum(d in before for d in after) >= len(after) - 3


def test_the_packed_form_round_trips_and_refuses_what_does_not_add_up():
    index = index_bytes(data_of(2 * MB))
    assert ChunkIndex.unpack(index.pack(), 2 * MB) == index
    with pytest.raises(BadIndex, match="not the file's"):
        ChunkIndex.unpack(index.pack(), 2 * MB + 1)
    with pytest.raises(BadIndex, match="format mark"):
        ChunkIndex.unpack(b"x" + index.pack())
    with pytest.raises(BadIndex, match="cut short"):
        ChunkIndex.unpack(index.pack()[:-1])


def test_only_files_of_a_mebibyte_or_more_get_an_index():
    assert not wants_index(MB - 1) and wants_index(MB)


def test_hash_fd_gives_the_sha256_and_the_index_in_one_read(tmp_path):
    import hashlib

    data = data_of(3 * MB)
    path = tmp_path / "f"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        sha, index = hash_fd(fd, len(data))
    finally:
        os.close(fd)
    assert sha == hashlib.sha256(data).hexdigest() and index == index_bytes(data)


def test_the_store_keeps_indexes_by_content_and_finds_chunks_in_any_file(tmp_path):
    a, b = data_of(2 * MB, 1), data_of(2 * MB, 2)
    with ChunkStore(str(tmp_path), locate=True) as store:
        store.put("a" * 64, index_bytes(a))
        store.put("b" * 64, index_bytes(b))
        assert store.get("a" * 64) == index_bytes(a) and store.get("c" * 64) is None
        wanted = index_bytes(b[:MB] + a[MB:])
        found = store.locate(wanted.digests)
        assert {sha for places in found.values() for sha, _, _ in places} == {"a" * 64, "b" * 64}
        assert store.prune({"b" * 64}) == 1
        assert store.known() == {"b" * 64}
        assert all(place[0] == "b" * 64 for places in store.locate(wanted.digests).values()
                   for place in places)


def test_a_store_of_a_missing_root_creates_nothing_until_used(tmp_path):
    store = ChunkStore(str(tmp_path / "nowhere"))
    store.close()
    assert not os.path.exists(tmp_path / "nowhere")


@pytest.mark.parametrize("positioned", [True, False], ids=["pread", "seek-and-lock"])
def test_positioned_io_from_many_threads(tmp_path, monkeypatch, positioned):
    """Do reads and writes at offsets from several threads land right, with os.pread/pwrite and
    on the path systems without them (Windows) take?"""
    monkeypatch.setattr(fileio, "HAVE_PREAD", positioned)
    data = data_of(2 * MB)
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT)
    try:
        pieces = [(start, data[start:start + 65536]) for start in range(0, len(data), 65536)]
        random.Random(3).shuffle(pieces)
        threads = [threading.Thread(target=lambda part=pieces[n::4]: [
            fileio.pwrite(fd, chunk, start) for start, chunk in part]) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert fileio.pread(fd, 100, MB) == data[MB:MB + 100]
        assert fileio.pread(fd, 100, len(data) - 10) == data[-10:]  # short only at the end
    finally:
        os.close(fd)
    assert (tmp_path / "f").read_bytes() == data


@pytest.mark.parametrize("advice", [True, False], ids=["fadvise", "none"])
def test_bytes_sent_to_disk_early_stay_what_was_written(tmp_path, monkeypatch, advice):
    """write_back_soon (Linux's posix_fadvise; nothing where the OS has no such call) loses
    nothing: the file reads back as written, before and after an fsync."""
    monkeypatch.setattr(fileio, "HAVE_FADVISE", advice and fileio.HAVE_FADVISE)
    data = data_of(3 * MB)
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT)
    try:
        for start in range(0, len(data), MB):
            fileio.pwrite(fd, data[start:start + MB], start)
            fileio.write_back_soon(fd, start, MB)
        assert fileio.pread(fd, len(data), 0) == data
        os.fsync(fd)
    finally:
        os.close(fd)
    assert (tmp_path / "f").read_bytes() == data
