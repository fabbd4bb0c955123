"""What the console says of delta copies: what crossed the network beside a copy's progress, whole
files for providers that cannot reuse parts, and about how much Copy what is missing would send."""
import hashlib
import html
import re

import pytest

from portal.core.chunks import index_bytes
from portal.core.chunkstore import ChunkStore
from portal.core.units import human_bytes
from portal.services.assets import rebuild_assets, refresh_statuses
from tests.factories import add_cloud_dp, add_copy_job, add_dp, add_file
from tests.images import IMAGE, change_in_place, image

MiB, GiB = 1024 ** 2, 1024 ** 3
SIZE, SENT = int(5.2 * GiB), 61 * MiB
NETWORK = "5.2 GiB: 61.0 MiB sent, 2.0 GiB reused"


def text(response) -> str:
    assert response.status_code == 200
    return html.unescape(response.get_data(as_text=True))


def network_lines(body: str) -> list[str]:
    return re.findall(r'class="small muted copy-network">([^<]*)<', body)


@pytest.fixture
def running(central):
    """A copy to a DP node 2 GiB + 61 MiB into a 5.2 GiB image, 61 MiB of it sent."""
    return add_copy_job(add_dp("Seattle"), bytes_total=SIZE, bytes_done=2 * GiB + SENT,
                        bytes_sent=SENT, phase="copying Images/Win11.wim")


def test_a_running_copy_shows_what_crossed_the_network_wherever_it_shows(login_as, running):
    """Do the job's page and fragment, the Jobs list, the dashboard and the Images page all
    show what was sent and reused beside the bar?"""
    console = login_as("technician")
    for url in (f"/jobs/{running.id}", "/jobs/", "/", "/libraries/images"):
        assert network_lines(text(console.get(url))) == [NETWORK], url
    fragment = text(console.get(f"/jobs/{running.id}", hx=True))
    assert network_lines(fragment) == [NETWORK] and "<!doctype html>" not in fragment
    assert 'hx-trigger="every 1s"' in fragment  # still polling itself


def test_a_finished_copy_shows_the_network_against_its_size(login_as, central):
    """At the end, is reused the size less what was sent, and not said twice when the summary
    already says it?"""
    node = add_dp("Seattle")
    plain = add_copy_job(node, "succeeded", bytes_total=SIZE, bytes_done=SIZE, bytes_sent=SENT,
                         summary="Images/Win11.wim is current at Seattle: 1 file(s) sent")
    said = add_copy_job(node, "succeeded", key="Images/Win10.wim", bytes_total=SIZE,
                        bytes_done=SIZE, bytes_sent=SENT,
                        summary="Images/Win10.wim is current at Seattle: 1 file(s) sent, 0 "
                                "already there; 5.2 GiB: 61.0 MiB sent, 5.1 GiB reused")
    console = login_as("admin")
    assert network_lines(text(console.get(f"/jobs/{plain.id}", hx=True))) == [
        "5.2 GiB: 61.0 MiB sent, 5.1 GiB reused"]
    body = text(console.get(f"/jobs/{said.id}", hx=True))
    assert network_lines(body) == [] and "5.2 GiB: 61.0 MiB sent, 5.1 GiB reused" in body


def test_an_older_copy_without_bytes_sent_shows_as_before(login_as, central):
    """A copy from before bytes_sent (NULL): the same bar and bytes, no network line?"""
    job = add_copy_job(add_dp("Seattle"), bytes_total=SIZE, bytes_done=2 * GiB, bytes_sent=None,
                       phase="copying Images/Win11.wim")
    body = text(login_as("admin").get(f"/jobs/{job.id}", hx=True))
    assert "copying Images/Win11.wim · 2.0 GiB of 5.2 GiB (38%)" in body
    assert "copy-network" not in body


@pytest.mark.parametrize("provider", ["onedrive", "gdrive", "dropbox"])
def test_copies_to_oauth_providers_say_whole_file(login_as, central, provider):
    """Does a copy to OneDrive, Drive or Dropbox say it sends whole files, beside its bar and
    in its row of the Jobs list, running or done?"""
    dp = add_cloud_dp("Cloud", provider)
    running = add_copy_job(dp, bytes_total=SIZE, bytes_done=GiB, bytes_sent=GiB)
    add_copy_job(dp, "succeeded", key="Images/Win10.wim", bytes_total=SIZE, bytes_done=SIZE,
                 bytes_sent=SIZE, summary="Images/Win10.wim is current at Cloud")
    console = login_as("admin")
    whole = "whole file: the provider cannot reuse parts"
    assert network_lines(text(console.get(f"/jobs/{running.id}", hx=True))) == [whole]
    assert network_lines(text(console.get("/jobs/"))) == [whole, whole]


def test_s3_copies_show_what_they_reused(login_as, central):
    """Is S3 counted among the DPs that reuse parts?"""
    job = add_copy_job(add_cloud_dp("Bucket", "s3"), bytes_total=SIZE, bytes_done=2 * GiB + SENT,
                       bytes_sent=SENT)
    assert network_lines(text(login_as("admin").get(f"/jobs/{job.id}", hx=True))) == [NETWORK]


def test_dp_list_says_about_how_much_copy_what_is_missing_would_send(login_as, central):
    """Does the DP list's Copy what is missing or outdated say about what it would send:
    changed chunks to a node holding the old image, the whole image to Dropbox?"""
    old = image(2 * MiB, seed=3)
    new = change_in_place(old, 2, 0.05)
    sha = {data: hashlib.sha256(data).hexdigest() for data in (old, new)}
    add_file(central, IMAGE, len(new), sha[new])
    node, dropbox = add_dp("Seattle"), add_cloud_dp("Box", "dropbox")
    for dp in (node, dropbox):
        add_file(dp, IMAGE, len(old), sha[old])
    for dp in (central, node, dropbox):
        rebuild_assets(dp.id)
    refresh_statuses()
    with ChunkStore(central.root) as store:
        for data in (old, new):
            store.put(sha[data], index_bytes(data))
    new_index, old_digests = index_bytes(new), set(index_bytes(old).digests)
    changed = sum(length for length, digest in zip(new_index.lengths, new_index.digests)
                  if digest not in old_digests)

    body = text(login_as("technician").get("/distribution-points/", hx=True))
    row = {dp.name: body.split(f'id="dp-{dp.id}"')[1].split("</tr>")[0] for dp in (node, dropbox)}
    assert 0 < changed < len(new) // 4
    assert ("Copy what is missing or outdated <span class=\"to-send\">"
            f"(about {human_bytes(changed)} to send)") in row["Seattle"]
    assert "(about 2.0 MiB to send)" in row["Box"]
    assert "to send" not in text(login_as("viewer").get("/distribution-points/"))
