"""Delta copies to a real DP node: an updated file sends only the chunks the node does not hold,
and ends byte-identical, whatever the kind of update."""
import hashlib
import os

import pytest

from portal.core.chunkstore import ChunkStore
from portal.dpnode import inventory
from tests.factories import write_file
from tests.helpers import copy_one, status_at
from tests.images import (IMAGE, append_with_header, at_node, change_in_place, image, shift,
                          update)

MB = 1024 * 1024


@pytest.mark.parametrize("edit, most", [
    (lambda d: change_in_place(d, 6, 0.01), 0.12),
    (shift, 0.10),
    (append_with_header, 0.10),
    (lambda d: d[:len(d) // 2], 0.02),  # the old file larger than the new
])
def test_an_updated_image_sends_only_what_changed(central, admin, rescan, seattle, node, work,
                                                  received, edit, most):
    """After the first copy, does each kind of update end byte-identical at the node while only a
    small share of the file crosses the network, and does the job say so?"""
    old = image(8 * MB, seed=1)
    update(central, rescan, IMAGE, old)
    first = copy_one(admin, work, IMAGE, seattle)
    assert first.state == "succeeded", first.error
    assert at_node(node, IMAGE) == old

    new = edit(old)
    update(central, rescan, IMAGE, new)
    assert status_at(seattle, IMAGE) == "outdated"
    before = received["bytes"]
    job = copy_one(admin, work, IMAGE, seattle)
    assert job.state == "succeeded", job.error
    assert at_node(node, IMAGE) == new
    on_the_wire = received["bytes"] - before
    assert on_the_wire <= most * len(new), f"{on_the_wire} bytes sent for {len(new)}"
    assert job.bytes_sent == on_the_wire
    assert job.bytes_done == job.bytes_total == len(new)
    assert " reused" in job.summary and "MiB:" in job.summary
    assert status_at(seattle, IMAGE) == "current"


def test_a_first_copy_goes_the_same_way_and_reuses_nothing(central, admin, rescan, seattle, node,
                                                          work, received):
    """With nothing to reuse, is the whole file sent in checked chunks and placed intact?"""
    data = image(3 * MB + 5, seed=2)
    update(central, rescan, IMAGE, data)
    job = copy_one(admin, work, IMAGE, seattle)
    assert job.state == "succeeded", job.error
    assert at_node(node, IMAGE) == data
    assert job.bytes_sent == received["bytes"] == len(data)
    assert "0 B reused" in job.summary
    with ChunkStore(node.root, locate=True) as chunks:  # where the next delta looks
        assert chunks.get(hashlib.sha256(data).hexdigest()) is not None


def test_an_empty_old_file_is_replaced_whole(central, admin, rescan, seattle, node, work):
    write_file(node.root, IMAGE, b"")
    rescan(seattle)
    data = image(2 * MB, seed=3)
    update(central, rescan, IMAGE, data)
    job = copy_one(admin, work, IMAGE, seattle)
    assert job.state == "succeeded", job.error
    assert at_node(node, IMAGE) == data


def test_a_folder_whose_files_moved_between_names_is_rebuilt_from_them(central, admin, rescan,
                                                                      seattle, node, work,
                                                                      received):
    """Files renamed inside a folder asset: are the new names built from the old files' chunks
    (nothing much sent) before the old names are removed?"""
    a, b = image(2 * MB, seed=4), image(2 * MB, seed=5)
    write_file(central.root, "Application Packs/Office/a.bin", a)
    write_file(central.root, "Application Packs/Office/b.bin", b)
    rescan(central)
    assert copy_one(admin, work, "Application Packs/Office", seattle).state == "succeeded"
    os.remove(os.path.join(central.root, "Application Packs/Office/a.bin"))
    os.remove(os.path.join(central.root, "Application Packs/Office/b.bin"))
    write_file(central.root, "Application Packs/Office/x/first.bin", b)
    write_file(central.root, "Application Packs/Office/x/second.bin", a)
    rescan(central)
    before = received["bytes"]
    job = copy_one(admin, work, "Application Packs/Office", seattle)
    assert job.state == "succeeded", job.error
    assert received["bytes"] - before == 0
    assert at_node(node, "Application Packs/Office/x/first.bin") == b
    assert at_node(node, "Application Packs/Office/x/second.bin") == a
    assert sorted(os.listdir(node.file("Application Packs/Office"))) == ["x"]


def test_a_second_edition_reuses_the_first_one_chunks(central, admin, rescan, seattle, node, work,
                                                     received):
    """Two assets sharing most chunks (two editions of an image): does the second one's first
    copy take them from the first one at the node?"""
    pro = image(6 * MB, seed=6)
    update(central, rescan, "Images/Win11-Pro.wim", pro)
    assert copy_one(admin, work, "Images/Win11-Pro.wim", seattle).state == "succeeded"
    enterprise = change_in_place(pro, 3, 0.02)
    update(central, rescan, "Images/Win11-Ent.wim", enterprise)
    before = received["bytes"]
    job = copy_one(admin, work, "Images/Win11-Ent.wim", seattle)
    assert job.state == "succeeded", job.error
    assert at_node(node, "Images/Win11-Ent.wim") == enterprise
    assert received["bytes"] - before < 0.15 * len(enterprise)


def test_a_damaged_chunk_source_is_not_used_and_a_verify_reports_it(central, admin, rescan,
                                                                   seattle, node, work):
    """Bit rot in the file a chunk would be taken from: does the copy plan again, have that chunk
    sent, end identical, and does a verify of the DP then mark the damaged file failed?"""
    pro = image(6 * MB, seed=8)
    update(central, rescan, "Images/Win11-Pro.wim", pro)
    assert copy_one(admin, work, "Images/Win11-Pro.wim", seattle).state == "succeeded"
    path = node.file("Images/Win11-Pro.wim")
    st = os.stat(path)
    with open(path, "r+b") as fh:  # flip bytes under an unchanged size and time: bit rot
        fh.seek(3 * MB)
        fh.write(bytes(255 - b for b in pro[3 * MB:3 * MB + 100]))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))

    enterprise = change_in_place(pro, 2, 0.01)
    update(central, rescan, "Images/Win11-Ent.wim", enterprise)
    job = copy_one(admin, work, "Images/Win11-Ent.wim", seattle)
    assert job.state == "succeeded", job.error
    assert at_node(node, "Images/Win11-Ent.wim") == enterprise
    assert any("plans again" in w for w in job.warnings)
    # The node forgot the damaged file's hash: its next scan reads it and reports it as it is.
    assert inventory.known_sha256(node.root, "Images/Win11-Pro.wim", st.st_size,
                                  st.st_mtime_ns) is None
    rescan(seattle)
    assert status_at(seattle, "Images/Win11-Pro.wim") in ("outdated", "failed")
