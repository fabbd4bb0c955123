"""Pages that show what DPs said (free space) answer whatever was stored (issue 13, item 4): a
value a node answered before answers were read typed is shown as "—", never a 500."""
import pytest
from sqlalchemy import text

from portal.extensions import db
from tests.node_fixtures import KEY

LIST = "/distribution-points/"


@pytest.mark.parametrize("free, total, shown", [("leak", "x" * 10_000, "Free space: —"),
                                                (-5, 1e300, "Free space: —"),
                                                (2.5, "nan", "Free space: 2 B")])
def test_stored_junk_never_breaks_the_pages(login_as, api_as, seattle, free, total, shown):
    """Do /distribution-points/, /branch/ and the API answer with junk stored as free space?"""
    if db.engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL keeps a bigint column's type: no junk can be stored")
    db.session.execute(text("UPDATE distribution_points SET free_bytes = :f, total_bytes = :t "
                            "WHERE id = :id"), {"f": free, "t": total, "id": seattle.id})
    db.session.commit()
    db.session.expire_all()
    admin = login_as("admin")
    listing = admin.get(LIST)
    assert listing.status_code == 200 and "Seattle" in listing.get_data(as_text=True)
    assert "leak" not in listing.get_data(as_text=True)
    assert admin.get(LIST, hx=True).status_code == 200
    viewer = login_as("viewer", sites=["Seattle office"])
    branch = viewer.get("/branch/")
    html = branch.get_data(as_text=True)
    assert branch.status_code == 200 and shown in html and "leak" not in html
    shown = api_as("admin").get(f"/api/v1/distribution-points/{seattle.id}").get_json()
    assert shown["free_bytes"] is None and shown["total_bytes"] is None


def test_a_node_answering_junk_is_refused_at_the_test_and_the_list_stays_up(login_as, node,
                                                                             monkeypatch):
    """Does Test connection against a node answering {"free_bytes": "leak"} say why, in the
    result, and Add save nothing?"""
    from portal.dpnode import routes

    real = routes.health

    def leaky():
        return dict(real(), free_bytes="leak")

    monkeypatch.setitem(node.app.view_functions, "dpnode.health", leaky)
    console = login_as("admin")
    result = console.post("/distribution-points/new-local/test",
                          {"name": "Seattle", "url": node.url, "allow_plain_http": "y",
                           "key": KEY}, hx=True).get_data(as_text=True)
    assert "Seattle answered a health report Depot cannot read (free_bytes is not a whole " \
           "number)" in result and "Connected" not in result and "leak" not in result
    assert console.get(LIST).status_code == 200


def test_the_connection_test_shows_credentials_and_link_local_refusals(login_as):
    """Are a URL with user:pass@ and a metadata address refused on the form, in Depot's words?"""
    console = login_as("admin")
    creds = console.post("/distribution-points/new-local/test",
                         {"url": "http://u:hunter2@127.0.0.1:1", "allow_plain_http": "y",
                          "key": KEY}, hx=True).get_data(as_text=True)
    assert "must not carry a user name or password" in creds and "hunter2" not in creds
    meta = console.post("/distribution-points/new-local/test",
                        {"url": "http://169.254.169.254", "allow_plain_http": "y", "key": KEY},
                        hx=True).get_data(as_text=True)
    assert "leads to 169.254.169.254, a link-local or cloud metadata address" in meta
