"""Security headers on every console answer: a CSP without 'unsafe-inline' that forbids framing,
nosniff, a Referrer-Policy, and no-store on what is made for one person (secrets shown once
above all); the templates carry no inline script, handler or style the policy would refuse."""
import re

import pytest

from portal.config import BASE_DIR
from portal.core import http_headers
from portal.web.headers import form_targets
from tests.factories import make_token, make_user
from tests.helpers import csrf_from

TEMPLATES = BASE_DIR / "portal" / "templates"
INLINE = re.compile(r"""\son[a-z]+\s*=|\sstyle\s*=|<script(?![^>]*\ssrc=)|<style|javascript:"""
                    r"""|hx-on|\[[^\]]*\]\s*["']|js:""", re.I)


def assert_secured(response, no_store=True):
    csp = response.headers["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["default-src"] == directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'" and "unsafe" not in csp
    assert directives["frame-ancestors"] == "'none'" and directives["base-uri"] == "'none'"
    assert directives["form-action"].startswith("'self'")
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] in ("same-origin", "no-referrer")
    if no_store:
        assert response.headers["Cache-Control"] == "no-store"
    # Plain HTTP unless DEPOT_SECURE_COOKIES says otherwise: no HSTS (tests/console/test_proxies)
    assert "Strict-Transport-Security" not in response.headers


def test_pages_fragments_and_errors_carry_the_headers(login_as, client):
    """Do the sign-in page, a page, its fragment, a 404, a CSRF refusal and an htmx error flash
    all carry the headers and no-store?"""
    assert_secured(client.get("/login"))
    console = login_as("admin")
    assert_secured(console.get("/computers/"))
    assert_secured(console.get("/computers/", hx=True))
    assert_secured(console.get("/no-such-page"))
    refused = console.client.post("/settings/tokens", data={"name": "x"})  # no CSRF token
    assert refused.status_code == 400
    assert_secured(refused)
    flash = console.post("/settings/tokens", {"name": "   "}, hx=True)
    assert flash.status_code == 400 and flash.headers["HX-Retarget"] == "#flash"
    assert_secured(flash)


def test_secrets_shown_once_are_never_stored(login_as):
    """Are the created API token, the created enrollment token and the installer zip (which holds
    the enrollment token) answered with no-store, whatever the view said?"""
    console = login_as("admin")
    created = console.post("/settings/tokens", {"name": "script"})
    assert created.status_code == 201 and "dpt_" in created.get_data(as_text=True)
    assert_secured(created)
    made = console.post("/settings/enrollment", {"name": "Seattle", "days": "7"})
    assert made.status_code == 303
    page = console.get(made.headers["Location"])
    assert "new-enroll-token" in page.get_data(as_text=True)
    assert_secured(page)
    installer = re.search(r'href="(/settings/enrollment/\d+/installer)"',
                          page.get_data(as_text=True)).group(1)
    zipped = console.get(installer)
    assert zipped.status_code == 200 and zipped.mimetype == "application/zip"
    assert_secured(zipped)
    assert "Expires" not in zipped.headers


def test_api_json_carries_the_headers(app, client):
    """Is the API's JSON (an answer and an error) no-store with the headers?"""
    token = make_token(make_user("admin"))
    answer = client.get("/api/v1/devices", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200
    assert_secured(answer)
    refused = client.get("/api/v1/devices")
    assert refused.status_code == 401
    assert_secured(refused)


def test_static_files_keep_their_caching(client):
    """Do static files carry the headers (nosniff above all) but stay cacheable?"""
    script = client.get("/static/depot.js")
    assert script.status_code == 200
    assert_secured(script, no_store=False)
    assert "no-store" not in script.headers.get("Cache-Control", "")
    script.close()


def test_a_view_keeps_a_security_header_it_set(app):
    """Does a header a view set itself win over the default?"""
    with app.test_request_context("/computers/"):
        response = app.process_response(app.make_response(("x", 200, {
            "X-Frame-Options": "SAMEORIGIN"})))
    assert response.headers["X-Frame-Options"] == "SAMEORIGIN"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_forms_may_go_on_to_the_consent_pages_only(app):
    """Does form-action name the providers' consent origins (Connect posts, then a 303 there),
    without their paths or credentials, and follow a changed setting?"""
    targets = form_targets(app.config)
    assert "https://login.microsoftonline.com" in targets
    assert "https://www.dropbox.com" in targets and "https://accounts.google.com" in targets
    app.config["DEPOT_ONEDRIVE_AUTH_URL"] = "http://user:pw@127.0.0.1:5555/tenant/oauth2"
    assert "http://127.0.0.1:5555" in form_targets(app.config)
    with app.test_request_context():
        response = app.test_client().get("/login")
    assert "form-action 'self' http://127.0.0.1:5555 " in response.headers[
        "Content-Security-Policy"]


@pytest.mark.parametrize("url, expected", [
    ("https://a.example/x?y", "https://a.example"), ("http://h:8/p", "http://h:8"),
    ("ftp://a.example", None), ("", None), ("javascript:alert(1)", None), (None, None),
    ("http://[::1", None)])
def test_origin(url, expected):
    assert http_headers.origin(url) == expected


def test_templates_hold_nothing_the_policy_refuses():
    """Is there no inline script, event handler, style, javascript: URL or eval'd htmx filter in
    any template? (The browser test checks the pages; this one every template.)"""
    found = []
    for path in sorted(TEMPLATES.rglob("*.html")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if INLINE.search(line):
                found.append(f"{path.relative_to(TEMPLATES)}:{number}: {line.strip()}")
    assert found == []


def test_htmx_is_told_to_inject_no_style_and_eval_nothing(client):
    """Does the page's htmx-config turn off the indicator styles, eval and script tags?"""
    html = client.get("/login").get_data(as_text=True)
    config = re.search(r'name="htmx-config" content=\'([^\']*)\'', html).group(1)
    for setting in ('"includeIndicatorStyles":false', '"allowEval":false',
                    '"allowScriptTags":false'):
        assert setting in config
    assert '<script src="/static/depot.js" defer></script>' in html
    assert csrf_from(html)
