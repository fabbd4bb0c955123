"""Sorting, searching and paging a console list: one way for every table.

A list declares a `Table`: the columns a person may sort by (a name in the URL -> an SQL
expression, or a key function for rows built in Python), what `q` searches, and the default
order. `read` takes `sort`, `dir`, `q` and `page` from the query string against that whitelist:
an unknown column or direction means the default order, a page that is not a whole number page 1,
one past the end the last page, so a hand-edited link shows a page and never an error. `rows_of`
(a select) and `items_of` (a list) apply them and give a `TablePage`: the rows, the counts the
pager shows ("1–50 of 1,234") and the links that keep the list's other arguments.
"""
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from flask import flash, redirect, request, url_for
from sqlalchemy import Select, func, or_, select

from portal.core.errors import DepotError, PermissionDenied
from portal.extensions import db
from portal.services.actors import Actor
from portal.web.auth import console_actor
from portal.web.views import MAX_PAGE, safe_next

MAX_QUERY = 200  # a longer search is cut there: no one types it, and LIKE on it is work for nothing
DIRECTIONS = ("asc", "desc")


@dataclass(frozen=True)
class Table:
    """What a list may be sorted by and searched in. `columns`: URL name -> SQL expression (or,
    for rows built in Python, a function of a row); `search`: SQL columns searched
    case-insensitively, functions of `q` giving a clause, or (Python rows) functions of a row
    giving its text; `tiebreak`: an SQL column ordered last so pages never overlap."""

    columns: Mapping[str, Any]
    default_sort: str
    default_dir: str = "asc"
    search: tuple = ()
    per_page: int = 50
    tiebreak: Any = None


@dataclass
class TablePage:
    """One page of a list as the templates use it: rows, counts and links."""

    rows: list
    total: int
    page: int
    per_page: int
    sort: str
    dir: str
    q: str
    base_url: str
    keep: dict = field(default_factory=dict)  # the list's own filters, kept by every link
    default_sort: str = ""
    default_dir: str = "asc"

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))

    @property
    def first(self) -> int:
        return (self.page - 1) * self.per_page + 1 if self.total else 0

    @property
    def last(self) -> int:
        return min(self.page * self.per_page, self.total)

    @property
    def counts(self) -> str:
        """What the pager says: "1–50 of 1,234", "3 of 3", "0 of 0"."""
        if self.total <= self.per_page:
            return f"{self.total:,} of {self.total:,}"
        return f"{self.first:,}–{self.last:,} of {self.total:,}"

    def args(self, **changes) -> dict:
        """The query arguments of this view of the list with `changes`, defaults left out."""
        merged = dict(self.keep, sort=self.sort, dir=self.dir, q=self.q, page=self.page)
        merged.update(changes)
        if merged.get("sort") == self.default_sort and merged.get("dir") == self.default_dir:
            del merged["sort"], merged["dir"]
        if merged.get("page") == 1:
            del merged["page"]
        return {k: v for k, v in merged.items() if v not in (None, "")}

    def link(self, **changes) -> str:
        """This list's URL with `changes` (page=2, sort=...), keeping everything else."""
        query = urlencode(self.args(**changes), doseq=True)
        return f"{self.base_url}?{query}" if query else self.base_url

    def sort_link(self, column: str) -> str:
        """The header link of a column: sorted by it (the other way round when it already is),
        from the first page."""
        direction = "asc"
        if column == self.sort:
            direction = "desc" if self.dir == "asc" else "asc"
        return self.link(sort=column, dir=direction, page=1)

    def aria_sort(self, column: str) -> str | None:
        if column != self.sort:
            return None
        return "ascending" if self.dir == "asc" else "descending"

    def hidden_args(self) -> list[tuple[str, str]]:
        """What a search form sends besides q: the filters and the order (a new search starts at
        page 1)."""
        return [(k, str(v)) for k, v in self.args(q="", page=1).items()]


@dataclass(frozen=True)
class TableArgs:
    """sort, dir, q and page as read from a query string, each already checked."""

    sort: str
    dir: str
    q: str
    page: int


def read(table: Table, args: Mapping | None = None) -> TableArgs:
    """The list's sort, dir, q and page from `args` (the request's by default): what is not on
    the whitelist, or not a page number, falls back to the default without an error."""
    args = request.args if args is None else args
    sort = args.get("sort")
    direction = args.get("dir")
    if sort not in table.columns:
        sort, direction = table.default_sort, table.default_dir
    if direction not in DIRECTIONS:
        direction = table.default_dir if sort == table.default_sort else "asc"
    q = args.get("q") or ""
    q = q.strip()[:MAX_QUERY] if isinstance(q, str) else ""
    try:
        page = int(args.get("page", 1))
    except (TypeError, ValueError):
        page = 1
    return TableArgs(sort, direction, q, min(max(page, 1), MAX_PAGE))


def _page(table: Table, asked: TableArgs, rows: list, total: int, page: int, endpoint: str,
          keep: Mapping | None, view_args: Mapping | None) -> TablePage:
    return TablePage(rows=rows, total=total, page=page, per_page=table.per_page,
                     sort=asked.sort, dir=asked.dir, q=asked.q,
                     base_url=url_for(endpoint, **(view_args or {})),
                     keep={k: v for k, v in (keep or {}).items() if v not in (None, "")},
                     default_sort=table.default_sort, default_dir=table.default_dir)


def _last_page(page: int, total: int, per_page: int) -> int:
    return min(page, max(1, -(-total // per_page)))


def search_clause(table: Table, q: str):
    """The WHERE clause of a search: any searched column contains `q`, case-insensitively,
    with % and _ taken literally."""
    clauses = [entry.icontains(q, autoescape=True) if hasattr(entry, "icontains") else entry(q)
               for entry in table.search]
    return or_(*clauses)


def rows_of(query: Select, table: Table, endpoint: str, *, asked: TableArgs | None = None,
            keep: Mapping | None = None, view_args: Mapping | None = None) -> TablePage:
    """One page of a select, searched and sorted as asked, with its counts and links to
    `endpoint` (its `view_args`; `keep`: the list's own filters, carried by every link)."""
    asked = asked or read(table)
    if asked.q and table.search:
        query = query.where(search_clause(table, asked.q))
    total = db.session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))
    page = _last_page(asked.page, total, table.per_page)
    column = table.columns[asked.sort]
    order = [column.desc() if asked.dir == "desc" else column.asc()]
    if table.tiebreak is not None:
        order.append(table.tiebreak.desc() if asked.dir == "desc" else table.tiebreak.asc())
    rows = list(db.session.scalars(query.order_by(None).order_by(*order)
                                   .offset((page - 1) * table.per_page).limit(table.per_page)))
    return _page(table, asked, rows, total, page, endpoint, keep, view_args)


def _sort_key(value):
    """None last, text without regard to case, everything else as it is."""
    if isinstance(value, str):
        return (0, value.casefold())
    return (value is None, value if value is not None else 0)


def items_of(items: list, table: Table, endpoint: str, *, asked: TableArgs | None = None,
             keep: Mapping | None = None, view_args: Mapping | None = None) -> TablePage:
    """One page of rows built in Python (dicts, models), searched and sorted as `rows_of` does."""
    asked = asked or read(table)
    if asked.q and table.search:
        needle = asked.q.casefold()
        items = [item for item in items
                 if any(needle in str(text(item) or "").casefold() for text in table.search)]
    key: Callable = table.columns[asked.sort]
    items = sorted(items, key=lambda item: _sort_key(key(item)), reverse=asked.dir == "desc")
    total = len(items)
    page = _last_page(asked.page, total, table.per_page)
    rows = items[(page - 1) * table.per_page:page * table.per_page]
    return _page(table, asked, rows, total, page, endpoint, keep, view_args)


def bulk_action(action: Callable[[Actor, list], Any], ids: list, endpoint: str):
    """Run a bulk action of a list on the ticked rows and go back to the list as it was (the
    form's `next`, else `endpoint`) with its outcome as a flash; nothing ticked is a flash too.
    A role that may not do it gets the 403 page, as for one row."""
    try:
        outcome = action(console_actor(), ids)
    except PermissionDenied:
        raise
    except DepotError as exc:
        flash(exc.message, "error")
    else:
        flash(outcome.sentence(), outcome.level)
    return redirect(safe_next(request.form.get("next")) or url_for(endpoint), code=303)
