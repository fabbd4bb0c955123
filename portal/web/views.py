"""What every view uses: reading the request and answering it, each in one way.

Page numbers come in two strictnesses on purpose: a console link never fails (`page_number`: a
bad ?page= shows page 1, a huge one page MAX_PAGE), while the API tells a program what is wrong
with what it sent (`pagination`: 400). Both stop at MAX_PAGE.
"""
from urllib.parse import urlsplit

from flask import make_response, redirect, render_template, request, url_for
from flask_login import current_user

from portal.core import jsonbody
from portal.core.errors import DepotError
from portal.services.permissions import require

MAX_PAGE = 100_000  # keeps OFFSET inside what every database takes
MAX_PER_PAGE = 200


# --- reading the request ---------------------------------------------------------------------

def page_number() -> int:
    """A console page's ?page=: anything but a whole number from 1 is page 1, and past MAX_PAGE
    it is MAX_PAGE (a hand-edited link shows a page, never an error)."""
    try:
        page = int(request.args.get("page", 1))
    except ValueError:
        return 1
    return min(max(page, 1), MAX_PAGE)


def pagination() -> tuple[int, int]:
    """The API's ?page= and ?per_page=, checked: a 400 that says what is wrong."""
    try:
        page = int(request.args.get("page", 1))
        per_page = int(request.args.get("per_page", 50))
    except ValueError:
        raise DepotError("page and per_page must be whole numbers") from None
    if not 1 <= page <= MAX_PAGE or not 1 <= per_page <= MAX_PER_PAGE:
        raise DepotError(f"page must be between 1 and {MAX_PAGE} and per_page between 1 and "
                         f"{MAX_PER_PAGE}")
    return page, per_page


def paginated(items: list, total: int, page: int, per_page: int) -> dict:
    """One page of an API list, with where the next one starts (None on the last)."""
    return {"items": items, "page": page, "per_page": per_page, "total": total,
            "next_page": page + 1 if page * per_page < total else None}


def json_body(*, strip_nul: bool = False) -> dict:
    """The request's JSON object, or a 400 (415 when not sent as JSON) that says what is wrong
    with it: see portal.core.jsonbody (`strip_nul`: NULs taken out of its strings, not refused)."""
    return jsonbody.read_object(request, strip_nul=strip_nul)


def bearer_token() -> str | None:
    """The secret of `Authorization: Bearer <secret>`, or None when the request sends none."""
    scheme, _, secret = request.headers.get("Authorization", "").partition(" ")
    secret = secret.strip()
    return secret if scheme.lower() == "bearer" and secret else None


def form_errors(form) -> str:
    """A WTForms form's errors as one line for a flash: `Label: error, error; Label: error`."""
    return "; ".join(f"{getattr(form, name).label.text}: {', '.join(errors)}"
                     for name, errors in form.errors.items())


def require_role_action(action: str) -> None:
    """403 unless the signed-in person may do this (raises PermissionDenied)."""
    require(current_user, action)


# --- answering -------------------------------------------------------------------------------

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


def see_other(endpoint: str, **values):
    """A plain form post's answer after a change: 303 See Other to the page that shows it."""
    return redirect(url_for(endpoint, **values), code=303)


def hx_redirect(url: str):
    """Tell htmx to load `url` as a whole page (HX-Redirect), e.g. when polling sees work done."""
    response = make_response("", 200)
    response.headers["HX-Redirect"] = url
    return response


def load_page(endpoint: str, **values):
    """After a change that leaves the current fragment behind: htmx loads the page as a whole, a
    plain form post gets a 303 to it."""
    if request.htmx:
        return hx_redirect(url_for(endpoint, **values))
    return see_other(endpoint, **values)


def safe_next(target) -> str | None:
    """A `next` to send a person on to after signing in: a path inside the console, or None.
    Refused: another site (`//host`, `https://host`) and a backslash, which browsers read as a
    slash (`/\\host` is another site to them though urlsplit sees a path)."""
    if not isinstance(target, str) or not target.startswith("/") or target.startswith("//") \
            or urlsplit(target).netloc or "\\" in target:
        return None
    return target
