"""Single sign-on in a real browser: "Sign in with Contoso" posts to the console, which sends the
browser on to the provider (tests/fakes/oidc_server.py) with a 303 that the console's CSP
form-action must allow; the provider sends it back and the dashboard opens as the new user."""
import json

import pytest
from playwright.sync_api import expect

from tests.fakes.oauth_server import CLIENT_ID, CLIENT_SECRET
from tests.fakes.oidc_server import FakeOidcProvider

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture
def oidc():
    fake = FakeOidcProvider().start()
    yield fake
    fake.stop()


@pytest.fixture
def sso_env(worker_env, oidc):
    """The web server gets the settings that point at the local provider."""
    worker_env.update({
        "DEPOT_OIDC_ISSUER": oidc.issuer, "DEPOT_OIDC_CLIENT_ID": CLIENT_ID,
        "DEPOT_OIDC_CLIENT_SECRET": CLIENT_SECRET, "DEPOT_OIDC_NAME": "Contoso",
        "DEPOT_OIDC_ROLE_MAP": json.dumps({"Depot-Techs": "technician"}),
        "DEPOT_OIDC_SITE_MAP": json.dumps({"Depot-Seattle": ["Seattle"]}),
    })


def test_sign_in_with_the_provider_in_a_browser(app, oidc, sso_env, live_server, page):
    """Does the button take the browser to the provider and back, signed in (no CSP refusal)?"""
    oidc.add_person("ann", email="ann@contoso.example", email_verified=True,
                    groups=["Depot-Techs", "Depot-Seattle"])
    page.goto(f"{live_server}/login")
    page.get_by_role("button", name="Sign in with Contoso").click()
    expect(page.get_by_role("navigation", name="Main")).to_be_visible()
    expect(page.locator(".who")).to_have_text("ann@contoso.example · technician")
    assert page.url == f"{live_server}/"
