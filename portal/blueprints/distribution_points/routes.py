"""Routes of /distribution-points/: the list, rescans, the DP switcher, adding and editing DP
nodes, and cloud DPs (S3 with keys; OneDrive, Drive and Dropbox through their consent page)."""
from flask import current_app, make_response, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required

from portal.blueprints.distribution_points import bp
from portal.blueprints.distribution_points.forms import (
    AcceptCertificateForm,
    EditCloudDpForm,
    EditLocalDpForm,
    LocalDpForm,
    OAuthDpForm,
    S3DpForm,
    SelectDpForm,
)
from portal.core.errors import DepotError, NotFound
from portal.core.throughput import duration_words
from portal.core.numbers import id_from_text
from portal.services import cloud_dps, dp_management, overviews, sites
from portal.services import distribution_points as dps
from portal.storage import CLOUD_PROVIDERS
from portal.web import tables
from portal.web.auth import console_actor
from portal.web.views import (
    form_errors,
    hx_redirect,
    load_page,
    page_or_fragment,
    require_role_action,
    see_other,
)


TABLE = tables.Table(
    columns={"name": lambda r: r["dp"].name, "kind": lambda r: r["dp"].kind,
             "site": lambda r: r["dp"].site, "status": lambda r: r["health"],
             "free": lambda r: r["dp"].free_bytes, "last_scan": lambda r: r["dp"].last_scan_at},
    default_sort="name",
    search=(lambda r: r["dp"].name, lambda r: r["dp"].site, lambda r: r["dp"].kind,
            lambda r: r["dp"].provider, lambda r: r["health"], lambda r: r["location"]))


@bp.get("/")
@login_required
def index():
    """Every DP with kind, site, status, free space, last scan and counts per content status."""
    connected, dp_id = None, id_from_text(request.args.get("connected"))
    if dp_id is not None:  # the DP just added: a hand-edited link shows the list, no error
        try:
            connected = dps.get_dp(dp_id, current_user)
        except NotFound:
            pass
    t = tables.items_of(overviews.dp_list(current_user), TABLE, "distribution_points.index")
    return page_or_fragment("distribution_points/index.html", "distribution_points/_list.html",
                            connected=connected, t=t, rows=t.rows)


@bp.post("/<int:dp_id>/rescan")
@login_required
def rescan(dp_id: int):
    """Start (or join) a rescan; htmx gets the progress widget, a plain form goes to Jobs."""
    dp = dps.get_dp(dp_id, current_user)
    job, _ = dps.request_rescan(dp, console_actor())
    if request.htmx:
        return page_or_fragment("jobs/show.html", "jobs/_job.html", job=job)
    return see_other("jobs.index")


@bp.post("/select")
@login_required
def select():
    """The DP switcher: remember which DP's content the library pages show. htmx posts it from
    pages that do not show that content, so nothing is reloaded (a half-filled form stays as it
    is); a plain post (no script, or a library page) goes back to the page it came from."""
    dps.select_dp(current_user, SelectDpForm().dp_id.number())
    if request.htmx:
        return "", 204
    back = request.referrer if request.referrer and request.referrer.startswith(request.host_url) \
        else url_for("dashboard.index")
    return redirect(back, code=303)


def _to_list():
    """After a change: the list, as a whole page even for htmx, since the DP switcher in the top
    bar lists the DPs too."""
    return load_page(".index")


def _new_local_page(form, error=None, status=200, detail=None):
    return page_or_fragment("distribution_points/new_local.html",
                            "distribution_points/_local_form.html", form=form, error=error,
                            detail=detail), status


@bp.get("/new-local")
@login_required
def new_local():
    """The form to add a DP node: name, URL, key and site, with a connection test (admins)."""
    require_role_action("manage_dps")
    return _new_local_page(LocalDpForm())


@bp.post("/new-local")
@login_required
def create_local():
    """Add the DP node once its connection test passes; else the form again, without the key."""
    require_role_action("manage_dps")
    form = LocalDpForm()  # CSRF is checked app-wide; the service checks the fields
    try:
        dp_management.add_local(console_actor(), form.name.data, form.url.data, form.key.data,
                                form.site.data, allow_plain_http=bool(form.allow_plain_http.data),
                                tls_fingerprint=form.tls_fingerprint.data or None)
    except DepotError as exc:
        return _new_local_page(form, exc.message, exc.status, getattr(exc, "detail", None))
    return _to_list()


@bp.post("/new-local/test")
@login_required
def test_local():
    """Try the entered URL and key, saving nothing: the node's version and free space, or why
    not."""
    require_role_action("manage_dps")  # it makes the server connect where it is told
    form = LocalDpForm()
    health, test_error, test_detail = None, None, None
    try:
        health = dp_management.test_connection(
            form.url.data, form.key.data, (form.name.data or "").strip() or "the node",
            allow_plain_http=bool(form.allow_plain_http.data))
    except DepotError as exc:
        test_error, test_detail = exc.message, getattr(exc, "detail", None)
    return page_or_fragment("distribution_points/new_local.html",
                            "distribution_points/_connection.html", form=form, health=health,
                            test_error=test_error, test_detail=test_detail)


def _local_dp(dp_id: int):
    require_role_action("manage_dps")
    dp = dps.get_dp(dp_id, current_user)
    if dp.kind != "local":
        raise NotFound(f"{dp.name} is not a DP node; only DP nodes are edited here")
    return dp


def _edit_page(dp, form, error=None, status=200, notice=None, detail=None):
    presented, unreadable = dp_management.presented_certificate(dp)
    return page_or_fragment("distribution_points/edit_local.html",
                            "distribution_points/_edit_form.html", dp=dp, form=form,
                            error=error, detail=detail, notice=notice, presented=presented,
                            unreadable=unreadable, accept_form=AcceptCertificateForm(
                                formdata=None, fingerprint=presented)), status


@bp.get("/<int:dp_id>/edit")
@login_required
def edit_local(dp_id: int):
    """A DP node's name, site, URL, key, maintenance flag, bandwidth cap and copy hours (admins)."""
    dp = _local_dp(dp_id)
    return _edit_page(dp, EditLocalDpForm.for_dp(dp))


@bp.post("/<int:dp_id>/edit")
@login_required
def update_local(dp_id: int):
    """Save the changes; a new URL or key is tested first. Errors: the form again, with why."""
    dp = _local_dp(dp_id)
    form = EditLocalDpForm()
    if not form.validate():
        return _edit_page(dp, form, form_errors(form), 400)
    try:
        dp_management.update_dp(console_actor(), dp, form.changes(dp))
    except DepotError as exc:
        return _edit_page(dp, form, exc.message, exc.status, detail=getattr(exc, "detail", None))
    return _to_list()


def _cloud_dp(dp_id: int):
    require_role_action("manage_dps")
    dp = dps.get_dp(dp_id, current_user)
    if dp.kind != "cloud":
        raise NotFound(f"{dp.name} is not a cloud DP; only cloud DPs are edited here")
    return dp


def _edit_cloud_page(dp, form=None, error=None, status=200):
    form = form or EditCloudDpForm.for_dp(dp, cloud_dps.folder_of(dp))
    return page_or_fragment("distribution_points/edit_cloud.html",
                            "distribution_points/_edit_cloud_form.html", dp=dp, form=form,
                            error=error, sites=sites.known_sites()), status


@bp.get("/<int:dp_id>/edit-cloud")
@login_required
def edit_cloud(dp_id: int):
    """A cloud DP's name, site, folder, maintenance flag, bandwidth cap and copy hours (admins);
    its keys or consent are kept."""
    return _edit_cloud_page(_cloud_dp(dp_id))


@bp.post("/<int:dp_id>/edit-cloud")
@login_required
def update_cloud(dp_id: int):
    """Save the changes, checked as when the DP was added (a new folder is reached with the DP's
    own credentials, then rescanned). Errors: the form again, with why."""
    dp = _cloud_dp(dp_id)
    form = EditCloudDpForm()
    if not form.validate():
        return _edit_cloud_page(dp, form, form_errors(form), 400)
    try:
        dp_management.update_dp(console_actor(), dp, form.changes())
    except DepotError as exc:
        return _edit_cloud_page(dp, form, exc.message, exc.status)
    return _to_list()


@bp.post("/<int:dp_id>/accept-certificate")
@login_required
def accept_certificate(dp_id: int):
    """Pin the certificate the node presents now (the one shown on the Edit page), once the key
    works through it; the Edit page again, saying what happened."""
    dp = _local_dp(dp_id)
    form = AcceptCertificateForm()
    try:
        dp_management.accept_certificate(console_actor(), dp, form.fingerprint.data or "")
    except DepotError as exc:
        return _edit_page(dp, EditLocalDpForm.for_dp(dp), exc.message, exc.status)
    return _edit_page(dp, EditLocalDpForm.for_dp(dp),
                      notice="The new certificate is pinned: Depot talks to the node again.")


@bp.post("/<int:dp_id>/delete")
@login_required
def delete(dp_id: int):
    """Forget a DP: Depot no longer knows it; its files stay on the node."""
    require_role_action("manage_dps")
    dp_management.delete_dp(console_actor(), dps.get_dp(dp_id, current_user))
    return _to_list()


# --- cloud DPs -------------------------------------------------------------------------------

def _provider(value) -> str:
    cloud_dps.provider_title(value)  # a clear 400 for an unknown provider
    return value


def _new_cloud_page(provider: str, form=None, error=None, status=200, test=None):
    form = form or (S3DpForm() if provider == "s3" else OAuthDpForm(formdata=None, folder="Depot"))
    choices = cloud_dps.provider_choices()
    return page_or_fragment("distribution_points/new_cloud.html",
                            "distribution_points/_cloud_form.html", provider=provider,
                            providers=CLOUD_PROVIDERS, choices=choices,
                            choice=next(c for c in choices if c.key == provider), form=form,
                            error=error, test=test), status


@bp.get("/new-cloud")
@login_required
def new_cloud():
    """Add cloud: pick a provider; S3 asks for bucket and keys, the others open their consent."""
    require_role_action("manage_dps")
    return _new_cloud_page(_provider(request.args.get("provider", "s3")))


@bp.post("/new-cloud/s3")
@login_required
def create_s3():
    """Add the bucket once its connection test passes; else the form again, without the secret."""
    require_role_action("manage_dps")
    form = S3DpForm()
    try:
        cloud_dps.add_s3(console_actor(), form.values())
    except DepotError as exc:
        return _new_cloud_page("s3", form, exc.message, exc.status)
    return _to_list()


@bp.post("/new-cloud/s3/test")
@login_required
def test_s3():
    """List, write and delete a probe object with what was entered, saving nothing."""
    require_role_action("manage_dps")  # it makes the server connect where it is told
    form = S3DpForm()
    try:
        result = {"ok": True, **cloud_dps.test_s3(form.values(), form.name.data or None)}
    except DepotError as exc:
        result = {"ok": False, "message": exc.message}
    return page_or_fragment("distribution_points/new_cloud.html",
                            "distribution_points/_s3_test.html", provider="s3",
                            providers=CLOUD_PROVIDERS, form=form, error=None, test=result)


def _callback_url(provider: str) -> str:
    return url_for(".oauth_callback", provider=provider, _external=True)


PENDING_KEY = "depot_consent"
MAX_PENDING = 5  # consents started and not finished, per browser session
FAILED_KEY = "depot_consent_failed"  # why a consent failed, by the DP name, for the waiting tab


def _consent_failed(name, message: str) -> None:
    """Tell the Add cloud tab still waiting for `name` (by the session) that its consent failed."""
    name = (name or "").strip()
    if not name:
        return
    failed = dict(session.get(FAILED_KEY) or {})
    failed.pop(name, None)
    while len(failed) >= MAX_PENDING:
        failed.pop(next(iter(failed)))
    failed[name] = message[:300]
    session[FAILED_KEY] = failed


def _consent(started: tuple[str, str, dict]) -> str:
    """Keep a started consent in the signed session under its state (the oldest of those never
    finished go, so the cookie stays small); the provider's consent page to go to."""
    url, state, pending = started
    waiting = dict(session.get(PENDING_KEY) or {})
    while len(waiting) >= MAX_PENDING:
        waiting.pop(next(iter(waiting)))
    waiting[state] = pending
    session[PENDING_KEY] = waiting
    return url


def _take_consent(state) -> dict | None:
    """The consent started under `state` in this session, forgotten as it is taken."""
    waiting = dict(session.get(PENDING_KEY) or {})
    pending = waiting.pop(state or "", None)
    session[PENDING_KEY] = waiting
    return pending


@bp.post("/new-cloud/<provider>/connect")
@login_required
def connect(provider: str):
    """Off to the provider's consent page (the form opens it in a new tab)."""
    require_role_action("manage_dps")
    form = OAuthDpForm()
    try:
        target = _consent(cloud_dps.start_consent(
            console_actor(), _provider(provider),
            {"name": form.name.data, "site": form.site.data, "folder": form.folder.data},
            _callback_url(provider)))
    except DepotError as exc:
        _consent_failed(form.name.data, exc.message)
        return _new_cloud_page(provider, form, exc.message, exc.status)
    return redirect(target, code=303)


@bp.get("/new-cloud/done")
@login_required
def consent_done():
    """Polled by the Add cloud page while the consent runs in the other tab: once the DP exists,
    the page goes to the list; when the consent failed, or the page has waited (`waited`, in
    seconds since the form was sent) past DEPOT_CONSENT_WAIT_SECONDS, it stops waiting and says
    why, with Try again; until then, nothing (204)."""
    require_role_action("manage_dps")
    name = (request.args.get("name") or "").strip()
    dp = dps.find_dp_by_name(current_user, name)
    if dp is not None:
        return hx_redirect(url_for(".index", connected=dp.id))
    provider = request.args.get("provider")
    if provider is not None:
        _provider(provider)
    failed = dict(session.get(FAILED_KEY) or {})
    message = failed.pop(name, None)
    limit = current_app.config["DEPOT_CONSENT_WAIT_SECONDS"]
    waited = request.args.get("waited", type=int)
    if message is None and (waited is None or waited < limit):
        return "", 204
    if message is not None:
        session[FAILED_KEY] = failed
    if not request.htmx:  # only the Add cloud page polls this
        return see_other(".new_cloud", provider=provider or "s3")
    response = make_response(render_template(
        "distribution_points/_consent_wait.html", provider=provider, providers=CLOUD_PROVIDERS,
        failed=message, gave_up=None if message else duration_words(limit)))
    # The answer replaces the waiting line (the poll's own swap is none): a new, hidden one
    # waits for Try again.
    response.headers["HX-Retarget"] = "#consent-status"
    response.headers["HX-Reswap"] = "innerHTML"
    return response


@bp.post("/<int:dp_id>/reconnect")
@login_required
def reconnect(dp_id: int):
    """The consent again for a DP whose access was withdrawn; the DP and its inventory stay."""
    require_role_action("manage_dps")
    dp = dps.get_dp(dp_id, current_user)
    if not dps.by_consent(dp):
        raise DepotError(f"{dp.name} is not connected through a consent page")
    return redirect(_consent(cloud_dps.start_consent(console_actor(), dp.provider, {},
                                                     _callback_url(dp.provider), dp=dp)), code=303)


@bp.get("/oauth/<provider>/callback")
@login_required
def oauth_callback(provider: str):
    """The provider sends the browser back here: the DP is created (or reconnected) and its
    rescan starts; then the list, which says so."""
    require_role_action("manage_dps")
    pending = _take_consent(request.args.get("state"))
    try:
        dp, _ = cloud_dps.finish_consent(console_actor(), _provider(provider), pending,
                                         request.args)
    except DepotError as exc:
        if isinstance(pending, dict):  # the Add cloud tab waiting for it stops and says why
            _consent_failed(pending.get("name"), exc.message)
        raise
    return see_other(".index", connected=dp.id)
