"""The one helper behind every console list (portal/web/tables.py): sort, dir, q and page read
against a whitelist, applied to a select or a list, with the pager's counts and links."""
import pytest
from sqlalchemy import select

from portal.models import DistributionPoint
from portal.web import tables
from portal.web.views import MAX_PAGE
from tests.factories import add_dp

TABLE = tables.Table(columns={"name": DistributionPoint.name, "site": DistributionPoint.site},
                     default_sort="name", search=(DistributionPoint.name,), per_page=2,
                     tiebreak=DistributionPoint.id)
LIST_TABLE = tables.Table(columns={"name": lambda r: r["name"], "n": lambda r: r["n"]},
                          default_sort="name", search=(lambda r: r["name"],), per_page=2)


@pytest.mark.parametrize("args, expected", [
    ({}, ("name", "asc", "", 1)),
    ({"sort": "site", "dir": "desc"}, ("site", "desc", "", 1)),
    ({"sort": "password_hash", "dir": "desc"}, ("name", "asc", "", 1)),  # not on the whitelist
    ({"sort": "site", "dir": "sideways"}, ("site", "asc", "", 1)),
    ({"page": "0"}, ("name", "asc", "", 1)),
    ({"page": "-3"}, ("name", "asc", "", 1)),
    ({"page": "two"}, ("name", "asc", "", 1)),
    ({"page": "1e3"}, ("name", "asc", "", 1)),
    ({"page": "9" * 40}, ("name", "asc", "", MAX_PAGE)),
    ({"q": "  seattle  "}, ("name", "asc", "seattle", 1)),
    ({"q": "x" * 1000}, ("name", "asc", "x" * tables.MAX_QUERY, 1)),
])
def test_read_falls_back_instead_of_failing(args, expected):
    """Does an unknown column, a bad direction or a page that is no page number fall back to the
    default (never an error), and a huge page stop at MAX_PAGE?"""
    asked = tables.read(TABLE, args)
    assert (asked.sort, asked.dir, asked.q, asked.page) == expected


def _dps(app, names):
    for name in names:
        add_dp(name, site=name.lower())


def _page(app, **args):
    with app.test_request_context("/distribution-points/"):
        query = select(DistributionPoint).where(DistributionPoint.kind == "local",
                                                DistributionPoint.name != "Central")
        return tables.rows_of(query, TABLE, "distribution_points.index",
                              asked=tables.read(TABLE, args), keep={"state": "x"})


def test_sorts_pages_and_counts_a_select(app):
    """Are the rows sorted by the asked column both ways, paged, and counted "1–2 of 3"?"""
    _dps(app, ["Bravo", "Alpha", "Charlie"])
    first = _page(app)
    assert [d.name for d in first.rows] == ["Alpha", "Bravo"]
    assert (first.total, first.pages, first.counts) == (3, 2, "1–2 of 3")
    assert first.link(page=2) == "/distribution-points/?state=x&page=2"
    second = _page(app, page="2")
    assert [d.name for d in second.rows] == ["Charlie"] and second.counts == "3–3 of 3"
    backwards = _page(app, sort="name", dir="desc")
    assert [d.name for d in backwards.rows] == ["Charlie", "Bravo"]
    assert backwards.aria_sort("name") == "descending" and backwards.aria_sort("site") is None
    assert backwards.sort_link("name") == "/distribution-points/?state=x"  # back to the default
    assert backwards.sort_link("site") == "/distribution-points/?state=x&sort=site&dir=asc"


def test_page_past_the_end_is_the_last_page(app):
    """Does page 7 of a two-page list (or page 100000) show the last page, not an empty one?"""
    _dps(app, ["Bravo", "Alpha", "Charlie"])
    for page in ("7", str(MAX_PAGE), "9" * 30):
        shown = _page(app, page=page)
        assert shown.page == 2 and [d.name for d in shown.rows] == ["Charlie"]


def test_empty_list_counts_nothing(app):
    """Does an empty list say "0 of 0" on page 1 with no links to other pages?"""
    shown = _page(app, page="3")
    assert (shown.rows, shown.page, shown.pages, shown.counts) == ([], 1, 1, "0 of 0")


def test_search_is_case_insensitive_and_takes_percent_and_underscore_literally(app):
    """Does q find names whatever their case, and do % and _ match only themselves?"""
    _dps(app, ["Seattle", "SEA_2", "Salt 100% Lake", "Boise"])
    assert [d.name for d in _page(app, q="sea").rows] == ["SEA_2", "Seattle"]
    assert [d.name for d in _page(app, q="a_").rows] == ["SEA_2"]
    assert [d.name for d in _page(app, q="%").rows] == ["Salt 100% Lake"]
    assert _page(app, q="_").total == 1 and _page(app, q="%%").total == 0


def test_links_keep_the_filters_and_leave_out_defaults(app):
    """Do the links keep the list's filters and search, and leave out the default order and
    page 1 (so the plain URL stays plain)?"""
    with app.test_request_context("/"):
        shown = tables.items_of([], LIST_TABLE, "jobs.index",
                                asked=tables.read(LIST_TABLE, {"q": "a b", "sort": "n"}),
                                keep={"state": "failed", "empty": ""})
    assert shown.link() == "/jobs/?state=failed&sort=n&dir=asc&q=a+b"
    assert shown.link(sort="name", dir="asc") == "/jobs/?state=failed&q=a+b"
    assert dict(shown.hidden_args()) == {"state": "failed", "sort": "n", "dir": "asc"}


def test_items_of_a_list_sort_search_and_page(app):
    """Are rows built in Python searched, sorted (None last, text without case) and paged?"""
    rows = [{"name": "b", "n": 2}, {"name": "A", "n": None}, {"name": "c_1", "n": 1}]
    with app.test_request_context("/"):
        def shown(**args):
            return tables.items_of(rows, LIST_TABLE, "jobs.index",
                                   asked=tables.read(LIST_TABLE, args))
        assert [r["name"] for r in shown().rows] == ["A", "b"]
        assert [r["name"] for r in shown(sort="n").rows] == ["c_1", "b"]
        assert [r["name"] for r in shown(sort="n", page="2").rows] == ["A"]
        assert [r["name"] for r in shown(q="C_").rows] == ["c_1"]
        assert shown(q="%").total == 0 and shown(page="0").page == 1
