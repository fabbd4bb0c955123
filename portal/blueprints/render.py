"""Full page or fragment: the one rule of STYLE's htmx section, in one place."""
from flask import make_response, render_template, request
from flask_login import current_user

from portal.services.permissions import require


def is_fragment_request() -> bool:
    """An htmx request that is neither boosted nor a history restore wants only the fragment."""
    hx = getattr(request, "htmx", None)
    return bool(hx) and not hx.boosted and not hx.history_restore_request


def page_or_fragment(page: str, fragment: str, /, **context):
    """Render the page, or only its fragment for an htmx request; either way Vary: HX-Request."""
    template = fragment if is_fragment_request() else page
    response = make_response(render_template(template, **context))
    response.headers["Vary"] = "HX-Request"
    return response


def require_role_action(action: str) -> None:
    """403 unless the signed-in person may do this (raises PermissionDenied)."""
    require(current_user, action)
