"""Routes of /libraries/: one library's assets at the selected DP."""
from flask import abort
from flask_login import current_user, login_required

from portal.blueprints.libraries import bp
from portal.core.libraries import library_for_slug
from portal.services import overviews
from portal.web.views import page_or_fragment


@bp.get("/<slug>")
@login_required
def index(slug: str):
    """The assets of one library at the selected DP, with size, digest, modified time and status."""
    library = library_for_slug(slug)
    if library is None:
        abort(404, description=f"no library {slug!r}")
    return page_or_fragment("libraries/index.html", "libraries/_assets.html", slug=slug,
                            **overviews.library_page(current_user, library))
