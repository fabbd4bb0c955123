"""The status matrix beyond showing: a summary that follows the filter, its CSV export, and copy
or repair from a cell."""
import csv
import io
import re

from sqlalchemy import select

from portal.extensions import db
from portal.models import Asset, Job
from portal.web.csvfile import safe_cell
from tests.factories import add_dp


def _at(dp, key, status, digest="a" * 64):
    db.session.add(Asset(dp_id=dp.id, key=key, library=key.split("/")[0], name=key.split("/")[1],
                         kind="file", size=10, digest=digest, status=status))
    db.session.commit()


def _csv(response) -> list[list[str]]:
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    return list(csv.reader(io.StringIO(response.get_data(as_text=True).lstrip("\ufeff"))))


def test_summary_follows_the_filter(login_as, central, central_asset):
    """Do the counts above each column count only the rows the filter shows?"""
    seattle = add_dp("Seattle")
    central_asset("Images/a.wim")
    central_asset("Media/b.iso")
    _at(seattle, "Images/a.wim", "outdated", digest="b" * 64)
    console = login_as("viewer")
    everything = console.get("/status/").get_data(as_text=True)
    assert "1 outdated" in everything and "1 missing" in everything and "2 current" in everything
    images = console.get("/status/?library=Images", hx=True).get_data(as_text=True)
    assert "1 outdated" in images and "missing" not in images.split("<tbody>")[0]
    assert "1 current" in images and "2 current" not in images


def test_csv_export_is_what_is_shown(login_as, central, central_asset):
    """Is the CSV the filtered matrix: an asset a line, a DP a column, statuses in the cells?"""
    seattle = add_dp("Seattle", site="SEA")
    central_asset("Images/a.wim")
    central_asset("Media/b.iso")
    console = login_as("viewer")
    assert _csv(console.get("/status/export.csv")) == [
        ["Asset", "Central (HQ)", "Seattle (SEA)"],
        ["Images/a.wim", "current", "missing"], ["Media/b.iso", "current", "missing"]]
    only = _csv(console.get(f"/status/export.csv?library=Media&dp={seattle.id}&status=nope"))
    assert only == [["Asset", "Seattle (SEA)"], ["Media/b.iso", "missing"]]
    page = console.get(f"/status/?library=Media&dp={seattle.id}").get_data(as_text=True)
    assert f'href="/status/export.csv?library=Media&amp;dp={seattle.id}"' in page


def test_csv_cells_cannot_run_as_formulas(login_as, central, central_asset):
    """Does a DP named like a spreadsheet formula come out as text (a leading apostrophe)?"""
    add_dp("=HYPERLINK(\"http://evil.example\")", site="HQ")
    add_dp("+1-2", site="@SUM(A1)")
    central_asset("Images/a.wim")
    header = _csv(login_as("viewer").get("/status/export.csv"))[0]
    assert sorted(header[1:]) == ["'+1-2 (@SUM(A1))", "'=HYPERLINK(\"http://evil.example\") (HQ)",
                                  "Central (HQ)"]
    assert [safe_cell(v) for v in ("-3", "\tx", "\rx", "a=b", None, 5)] == [
        "'-3", "'\tx", "'\rx", "a=b", "", "5"]


def test_copy_or_repair_from_a_cell(login_as, central, central_asset):
    """Do missing, outdated and failed cells offer Copy or Repair to people who may copy (not
    at central, not for assets central lacks, not to viewers), and does the button start the
    copy of that asset to that DP?"""
    seattle, boise = add_dp("Seattle"), add_dp("Boise")
    central_asset("Images/a.wim")
    central_asset("Images/b.wim")
    _at(seattle, "Images/b.wim", "failed")
    _at(boise, "Images/b.wim", "current")
    _at(boise, "Images/only.wim", "only-here")
    html = login_as("technician").get("/status/").get_data(as_text=True)
    buttons = re.findall(r'aria-label="(Copy|Repair) ([^"]+)">', html)
    assert sorted(buttons) == [("Copy", "Images/a.wim at Boise"),
                               ("Copy", "Images/a.wim at Seattle"),
                               ("Repair", "Images/b.wim at Seattle")]
    assert "cell-copy" not in login_as("viewer").get("/status/").get_data(as_text=True)
    console = login_as("technician")
    response = console.post("/copies/", {"asset_keys": "Images/b.wim", "dp_ids": seattle.id},
                            hx=True)
    assert response.status_code == 200 and response.headers["HX-Trigger"] == "jobs-changed"
    [job] = db.session.scalars(select(Job)).all()
    assert (job.kind, job.dp_id, job.asset_key) == ("copy", seattle.id, "Images/b.wim")
    assert login_as("viewer").post("/copies/", {"asset_keys": "Images/b.wim",
                                               "dp_ids": seattle.id}, hx=True).status_code == 403
