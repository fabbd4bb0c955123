"""About how much "Copy what is missing or outdated" would send (services/deltas.bytes_to_send):
changed chunks where the DP reuses parts and central has both indexes (at S3, what the delta's
plan uploads), whole files otherwise."""
import hashlib
import os
from unittest import mock

import pytest

from portal.core.chunks import index_bytes
from portal.core.chunkstore import ChunkStore, store_path
from portal.extensions import db
from portal.services import deltas, overviews
from portal.services.assets import rebuild_assets
from portal.storage.s3_plan import plan_parts
from tests.factories import add_cloud_dp, add_dp, add_file, make_user
from tests.images import IMAGE, change_in_place, image

MiB = 1024 * 1024
OLD = image(2 * MiB, seed=1)
NEW = change_in_place(OLD, 3, 0.05)
DRIVER = "Platform Packs/Dell/net.sys"  # under 1 MiB: no index, always sent whole


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def changed_chunks(new: bytes, old: bytes) -> int:
    """The bytes of `new`'s chunks whose digest is not among `old`'s."""
    old_digests = {digest for _, _, digest in index_bytes(old).spans()}
    return sum(length for _, length, digest in index_bytes(new).spans()
               if digest not in old_digests)


def at_central(central, files: dict[str, bytes | None]) -> None:
    """Central's inventory and assets: each path with its bytes (None: not hashed yet)."""
    for path, data in files.items():
        add_file(central, path, len(data or b"?"), sha(data) if data is not None else None)
    rebuild_assets(central.id)
    db.session.commit()


def indexed(central, *versions: bytes) -> None:
    with ChunkStore(central.root) as store:
        for data in versions:
            store.put(sha(data), index_bytes(data))


@pytest.fixture
def updated(central):
    """Central holds NEW at IMAGE and a small driver; only NEW's and OLD's indexes are stored."""
    at_central(central, {IMAGE: NEW, DRIVER: b"d" * 1000})
    indexed(central, NEW, OLD)
    return central


def test_an_updated_image_counts_only_its_changed_chunks(updated):
    """At a DP node holding the old version, are only the new chunks counted, and the missing
    driver whole? At S3, which copies only runs of 5 MiB or more, is this 2 MiB image whole?"""
    node, bucket = add_dp("Seattle"), add_cloud_dp("Bucket", "s3")
    for dp in (node, bucket):
        add_file(dp, IMAGE, len(OLD), sha(OLD))
    estimate = deltas.bytes_to_send([node, bucket])
    expected = changed_chunks(NEW, OLD) + 1000
    assert estimate == {node.id: expected, bucket.id: len(NEW) + 1000}
    assert 1000 < expected < len(NEW) // 4


def test_an_s3_dp_counts_what_its_delta_plan_uploads(central):
    """A bigger image at S3: is its estimate what the delta's plan uploads (each change grown to
    S3's 5 MiB parts), more than the changed chunks and far less than the file?"""
    old = image(24 * MiB, seed=2)
    new = change_in_place(old, 2, 0.01)
    at_central(central, {IMAGE: new})
    indexed(central, new, old)
    bucket = add_cloud_dp("Bucket", "s3")
    add_file(bucket, IMAGE, len(old), sha(old))
    parts = plan_parts(index_bytes(new), index_bytes(old), 64 * MiB)
    planned = sum(part.length for part in parts if part.source is None)
    assert deltas.bytes_to_send([bucket]) == {bucket.id: planned}
    assert changed_chunks(new, old) < planned < len(new) // 2


@pytest.mark.parametrize("provider", ["onedrive", "gdrive", "dropbox"])
def test_a_provider_that_cannot_reuse_parts_counts_whole_files(updated, provider):
    """At OneDrive, Drive or Dropbox holding the old version, is the whole new file counted?"""
    dp = add_cloud_dp("Cloud", provider)
    add_file(dp, IMAGE, len(OLD), sha(OLD))
    assert deltas.bytes_to_send([dp]) == {dp.id: len(NEW) + 1000}


def test_what_the_dp_lacks_or_holds_already(updated):
    """Is a file the DP lacks counted whole, and one it holds in this version not at all?"""
    empty, current = add_dp("Empty"), add_dp("Current")
    add_file(current, IMAGE, len(NEW), sha(NEW))
    add_file(current, DRIVER, 1000, sha(b"d" * 1000))
    assert deltas.bytes_to_send([empty, current]) == {empty.id: len(NEW) + 1000, current.id: 0}


def test_an_old_version_without_its_index_counts_whole(central):
    """With the new version's index stored but not the old one's, is the file counted whole?"""
    at_central(central, {IMAGE: NEW})
    indexed(central, NEW)
    node = add_dp("Seattle")
    add_file(node, IMAGE, len(OLD), sha(OLD))
    assert deltas.bytes_to_send([node]) == {node.id: len(NEW)}


def test_a_new_version_without_its_index_counts_whole(central):
    """With only the old version's index (central not rescanned since), is it counted whole?"""
    at_central(central, {IMAGE: NEW})
    indexed(central, OLD)
    node = add_dp("Seattle")
    add_file(node, IMAGE, len(OLD), sha(OLD))
    assert deltas.bytes_to_send([node]) == {node.id: len(NEW)}


def test_an_old_version_not_hashed_at_the_dp_counts_whole(updated):
    """A DP file whose SHA-256 its scan has not got yet: is the new file counted whole?"""
    node = add_dp("Seattle")
    add_file(node, IMAGE, len(OLD), None)
    assert deltas.bytes_to_send([node]) == {node.id: len(NEW) + 1000}


def test_a_small_file_is_counted_whole_even_with_indexes(central):
    """Under 1 MiB a file is always sent whole: is it counted whole, whatever the store holds?"""
    old, new = b"a" * 900_000, b"a" * 899_000 + b"b" * 1000
    at_central(central, {DRIVER: new})
    indexed(central, new, old)
    node = add_dp("Seattle")
    add_file(node, DRIVER, len(old), sha(old))
    assert deltas.bytes_to_send([node]) == {node.id: len(new)}


def test_without_a_chunk_store_everything_counts_whole_and_none_is_made(central):
    """Before central's first scan with indexes: are files counted whole, and is no store
    created by looking?"""
    at_central(central, {IMAGE: NEW})
    node = add_dp("Seattle")
    add_file(node, IMAGE, len(OLD), sha(OLD))
    assert deltas.bytes_to_send([node]) == {node.id: len(NEW)}
    assert not os.path.exists(store_path(central.root))


def test_an_unreadable_chunk_store_counts_whole(central, caplog):
    """A store that is not a database (damaged): does the estimate count whole files, and say
    why in the log?"""
    at_central(central, {IMAGE: NEW})
    os.makedirs(os.path.dirname(store_path(central.root)), exist_ok=True)
    with open(store_path(central.root), "wb") as fh:
        fh.write(b"not a database" * 100)
    node = add_dp("Seattle")
    add_file(node, IMAGE, len(OLD), sha(OLD))
    assert deltas.bytes_to_send([node]) == {node.id: len(NEW)}
    assert "central's chunk store" in caplog.text


def test_assets_not_fully_hashed_at_central_are_not_counted(central):
    """Files of an asset central has not fully hashed: left out, as Copy what is missing
    leaves the asset out?"""
    at_central(central, {"Media/Win11/a.iso": b"a" * 5000, "Media/Win11/b.iso": None,
                         "Images/Other.wim": b"o" * 300})
    node = add_dp("Seattle")
    assert deltas.bytes_to_send([node]) == {node.id: 300}
    assert deltas.bytes_to_send([]) == {}


def test_the_dp_list_estimates_with_one_store_for_the_rows_that_offer_the_copy(updated):
    """Does the DP list estimate only for rows that offer the copy, opening central's store
    once for all of them and comparing each pair of versions once?"""
    nodes = [add_dp(name) for name in ("Seattle", "Tacoma", "Yakima")]
    for dp in nodes:
        add_file(dp, IMAGE, len(OLD), sha(OLD))
    disabled = add_dp("Closed")
    disabled.disabled = True
    db.session.commit()
    stores, gets = [], []
    real_get = ChunkStore.get

    def counting_store(root):
        stores.append(root)
        return ChunkStore(root)

    def counting_get(self, sha256):
        gets.append(sha256)
        return real_get(self, sha256)

    with mock.patch.object(deltas, "ChunkStore", counting_store), \
            mock.patch.object(ChunkStore, "get", counting_get):
        rows = {row["dp"].name: row for row in overviews.dp_list(make_user("technician"))}
    assert len(stores) == 1 and len(gets) == 2
    assert {name: row["to_send"] for name, row in rows.items()} == {
        "Central": None, "Closed": None, **{dp.name: changed_chunks(NEW, OLD) + 1000
                                            for dp in nodes}}
    viewer_rows = overviews.dp_list(make_user("viewer"))
    assert [row["to_send"] for row in viewer_rows] == [None] * 5  # nothing offered, nothing read
