"""A DP node from before delta copies (it lists no "delta" in its health) gets whole files."""
import pytest

from tests.helpers import copy_one

MB = 1024 * 1024
from tests.images import IMAGE, at_node, change_in_place, image, update


@pytest.fixture
def node_settings():
    return {"DEPOT_DP_RESERVE_BYTES": 0, "DEPOT_DP_DELTA": False}


def test_a_node_from_before_delta_copies_gets_whole_files(central, admin, rescan, seattle, node,
                                                          work, received):
    """A node that does not speak the delta protocol (its health lists no "delta"): is the file
    sent whole, the old way, and does the job say why?"""
    old = image(2 * MB, seed=9)
    update(central, rescan, IMAGE, old)
    assert copy_one(admin, work, IMAGE, seattle).state == "succeeded"
    new = change_in_place(old, 2, 0.01)
    update(central, rescan, IMAGE, new)
    before = received["bytes"]
    job = copy_one(admin, work, IMAGE, seattle)
    assert job.state == "succeeded", job.error
    assert at_node(node, IMAGE) == new
    assert received["bytes"] - before == len(new)
    assert "sent whole: the DP node takes whole files only" in job.summary
