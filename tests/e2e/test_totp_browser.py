"""Two-step sign-in in a real browser, under the Content-Security-Policy: setting it up under
Settings, Security (htmx), then signing in with the password and a code from the app."""
import time

import pyotp
import pytest
from playwright.sync_api import expect

from tests import factories
from tests.helpers import sign_in

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_set_up_and_sign_in_with_a_code(app, live_server, page):
    """Does a person set up an authenticator in the browser, see their recovery codes, sign out
    everywhere else and stay signed in here, and then sign in with the password followed by the
    app's code?"""
    factories.make_user(role="technician", email="tech@example.com")
    sign_in(page, live_server, "tech@example.com")
    page.goto(f"{live_server}/settings/security")
    page.get_by_role("button", name="Set up two-step sign-in").click()
    key = page.locator("#totp-key").inner_text().replace(" ", "")
    totp = pyotp.TOTP(key)
    page.get_by_label("Code").fill(totp.now())
    page.get_by_role("button", name="Turn on").click()
    expect(page.locator("#recovery-codes li")).to_have_count(10)
    expect(page.locator("#codes-left")).to_have_text("10")
    expect(page.get_by_text("Your other sessions have been signed out.")).to_be_visible()
    page.get_by_role("button", name="Sign out everywhere else").click()  # this one goes on
    expect(page.get_by_text("Every other session of yours has been signed out.")).to_be_visible()
    page.goto(f"{live_server}/settings/security")
    expect(page.locator("#codes-left")).to_have_text("10")

    page.get_by_role("button", name="Sign out", exact=True).click()
    page.get_by_label("Email").fill("tech@example.com")
    page.get_by_label("Password").fill(factories.PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{live_server}/login/code")
    page.get_by_label("Code").fill(totp.at(time.time() + 30))  # the next step: now's is used
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("navigation", name="Main")).to_be_visible()
