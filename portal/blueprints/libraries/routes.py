"""Routes of /libraries/: one library's assets at the selected DP (sorted, searched, paged)."""
from flask import abort
from flask_login import current_user, login_required

from portal.blueprints.libraries import bp
from portal.core.libraries import library_for_slug
from portal.services import overviews
from portal.web import tables
from portal.web.views import page_or_fragment

TABLE = tables.Table(
    columns={"name": lambda a: a["name"], "size": lambda a: a["size"],
             "modified": lambda a: a["modified_at"], "status": lambda a: a["status"]},
    default_sort="name", search=(lambda a: a["name"], lambda a: a["status"]))


@bp.get("/<slug>")
@login_required
def index(slug: str):
    """The assets of one library at the selected DP, with size, digest, modified time and status."""
    library = library_for_slug(slug)
    if library is None:
        abort(404, description=f"no library {slug!r}")
    page = overviews.library_page(current_user, library)
    t = tables.items_of(page.pop("items"), TABLE, "libraries.index", view_args={"slug": slug})
    return page_or_fragment("libraries/index.html", "libraries/_assets.html", slug=slug, t=t,
                            items=t.rows, **page)
