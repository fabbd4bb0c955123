"""Two-step sign-in with an authenticator app (TOTP) and recovery codes: setting it up, signing
in with a code, wrong and replayed codes, recovery codes used once, admins required to set it up,
turning it off, an admin's reset, and wrong codes counted by the sign-in throttling."""
import hashlib
import re

import pyotp
import pytest
from sqlalchemy import select

from portal.extensions import db
from portal.models import AuditEvent, RecoveryCode, User
from portal.services import secrets, two_factor
from portal.services.actors import Actor
from tests.factories import PASSWORD, make_user
from tests.helpers import Console, csrf_from

START = 1_800_000_000.0  # a fixed "now" (a multiple of 30): the steps are START // 30 + n


@pytest.fixture
def clock(monkeypatch):
    """The time two_factor checks codes against, moved by the test (`clock.now += 30`)."""
    class Clock:
        now = START

        def time(self):
            return self.now

    clock = Clock()
    monkeypatch.setattr(two_factor, "time", clock)
    return clock


class App:
    """The person's authenticator app: the code for now, or for a step ahead."""

    def __init__(self, key, clock):
        self.totp, self.clock = pyotp.TOTP(key), clock

    def code(self, ahead=0):
        return self.totp.at(self.clock.now + 30 * ahead)

    def wrong(self):
        """A six-digit code that is none of the codes accepted now."""
        valid = {self.code(n) for n in (-1, 0, 1)}
        return next(c for c in (f"{i:06d}" for i in range(1000)) if c not in valid)


def enrol(user, clock) -> tuple[App, list[str]]:
    """Two-step sign-in set up for the user (through the service); the app and recovery codes.
    The code that confirmed it is used: the next sign-in takes the next step's."""
    actor = Actor(user, via="console", ip="127.0.0.1")
    key = two_factor.begin(actor)["key"]
    app = App(key, clock)
    codes = two_factor.confirm(actor, app.code())
    clock.now += 30
    return app, codes


def browser(app, address="127.0.0.1"):
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def password_step(client, email, password=PASSWORD, next_url=None):
    token = csrf_from(client.get("/login").get_data(as_text=True))
    url = "/login" + (f"?next={next_url}" if next_url else "")
    return client.post(url, data={"email": email, "password": password, "csrf_token": token})


def code_step(client, code):
    token = csrf_from(client.get("/login/code").get_data(as_text=True))
    return client.post("/login/code", data={"code": code, "csrf_token": token})


def signed_in(client) -> bool:
    return client.get("/").status_code == 200


def console_for(client, user) -> Console:
    return Console(client, user, csrf_from(client.get("/settings/security").get_data(as_text=True)))


def actions(prefix="auth."):
    db.session.expire_all()
    return [(e.action, e.target, e.details) for e in db.session.scalars(
        select(AuditEvent).where(AuditEvent.action.startswith(prefix)).order_by(AuditEvent.id))]


def sign_in_with_code(app, user, code, address="127.0.0.1") -> Console:
    client = browser(app, address)
    assert password_step(client, user.email).status_code == 303
    response = code_step(client, code)
    assert response.status_code == 303, response.get_data(as_text=True)
    return console_for(client, user)


# --- setting it up -------------------------------------------------------------------------

def test_setting_up_shows_the_key_then_the_recovery_codes_once(app, login_as, clock):
    """Does Settings, Security give a key and an otpauth:// address, refuse a wrong first code,
    and on the right one turn two-step sign-in on and show ten recovery codes only this once,
    keeping the key encrypted and the codes hashed?"""
    console = login_as("technician")
    page = console.post("/settings/security/setup").get_data(as_text=True)
    uri = re.search(r'<code id="totp-uri">([^<]+)</code>', page).group(1).replace("&amp;", "&")
    parsed = pyotp.parse_uri(uri)
    assert parsed.issuer == "Depot" and parsed.name == console.user.email
    grouped = re.search(r'<code id="totp-key">([^<]+)</code>', page).group(1)
    assert grouped.replace(" ", "") == parsed.secret
    phone = App(parsed.secret, clock)

    refused = console.post("/settings/security/confirm", {"code": phone.wrong()})
    assert refused.status_code == 401 and "That code is not right" in refused.get_data(as_text=True)
    assert not two_factor.enabled(db.session.get(User, console.user.id))

    done = console.post("/settings/security/confirm", {"code": phone.code()})
    assert done.status_code == 200
    shown = re.findall(r"<li><code>([a-z2-9-]+)</code></li>", done.get_data(as_text=True))
    assert len(shown) == 10 and len(set(shown)) == 10
    assert all(re.fullmatch(r"[a-z2-9]{4}(-[a-z2-9]{4}){3}", c) for c in shown)
    assert 'Recovery codes left: <strong id="codes-left">10</strong>' in \
        done.get_data(as_text=True)
    assert not re.search(r"<li><code>", console.get("/settings/security").get_data(as_text=True))

    db.session.expire_all()
    user = db.session.get(User, console.user.id)
    assert user.totp_enabled_at is not None and parsed.secret not in user.totp_secret
    assert secrets.decrypt(user.totp_secret) == parsed.secret
    stored = {r.code_hash for r in db.session.scalars(select(RecoveryCode))}
    assert stored == {hashlib.sha256(c.replace("-", "").encode()).hexdigest() for c in shown}
    assert [a for a, _, _ in actions("auth.2fa")] == [
        "auth.2fa_setup_begun", "auth.2fa_setup_refused", "auth.2fa_enable"]


def test_turning_it_on_signs_out_the_other_sessions(app, login_as, clock):
    """Does turning two-step sign-in on end the person's other sessions (one signed in with a
    stolen password must not outlast the new factor) while this one goes on, audited?"""
    console = login_as("technician")
    copied = app.test_client()
    copied.set_cookie("session", console.client.get_cookie("session").value)
    elsewhere = browser(app)
    assert password_step(elsewhere, console.user.email).status_code == 303
    assert signed_in(copied) and signed_in(elsewhere)
    key = re.search(r'<code id="totp-key">([^<]+)</code>', console.post(
        "/settings/security/setup").get_data(as_text=True)).group(1).replace(" ", "")
    done = console.post("/settings/security/confirm", {"code": App(key, clock).code()}, hx=True)
    assert done.status_code == 200
    assert "Your other sessions have been signed out" in done.get_data(as_text=True)
    assert signed_in(console.client) and not signed_in(copied) and not signed_in(elsewhere)
    assert console.get("/settings/security").status_code == 200
    assert actions("auth.2fa_enable") == [("auth.2fa_enable", console.user.email,
                                           {"sessions_ended": True})]


def test_setting_up_twice_is_refused_while_on(app, login_as, clock):
    """Once it is on, is starting over refused (turn it off first), the key unchanged?"""
    console = login_as("viewer")
    phone, _ = enrol(console.user, clock)  # turning it on ended that session: sign in again
    console = sign_in_with_code(app, console.user, phone.code())
    before = db.session.get(User, console.user.id).totp_secret
    response = console.post("/settings/security/setup")
    assert response.status_code == 409 and "turn it off first" in response.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(User, console.user.id).totp_secret == before


# --- signing in ----------------------------------------------------------------------------

def test_signing_in_asks_for_the_code_after_the_password(app, clock):
    """With two-step sign-in on, does the right password lead to the code page (not signed in
    yet), and the right code sign in and go where `next` said, audited with the factor?"""
    user = make_user("technician")
    phone, _ = enrol(user, clock)
    client = browser(app)
    response = password_step(client, user.email, next_url="/jobs/")
    assert response.status_code == 303 and response.headers["Location"].endswith("/login/code")
    assert not signed_in(client)
    page = client.get("/login/code").get_data(as_text=True)
    assert 'autocomplete="one-time-code"' in page and "<script>" not in page
    response = code_step(client, phone.code())
    assert response.status_code == 303 and response.headers["Location"] == "/jobs/"
    assert signed_in(client)
    assert actions("auth.")[-2:] == [
        ("auth.password_accepted", user.email, {"next": "second factor"}),
        ("auth.login", user.email, {"second_factor": "totp"})]


def test_a_wrong_code_does_not_sign_in(app, clock):
    """Is a wrong code (and a malformed one) refused with a message, nobody signed in, and the
    failure audited?"""
    user = make_user("viewer")
    phone, _ = enrol(user, clock)
    client = browser(app)
    password_step(client, user.email)
    response = code_step(client, phone.wrong())
    assert response.status_code == 401
    assert "That code is not right, or was used already." in response.get_data(as_text=True)
    assert code_step(client, "12345x").status_code == 401
    assert code_step(client, "").status_code == 400
    assert not signed_in(client)
    assert [a for a, _, _ in actions("auth.2fa_failed")] == ["auth.2fa_failed"] * 2


def test_a_code_cannot_be_used_twice(app, clock):
    """Is a code that signed someone in refused when sent again within its window (from
    another browser too), an older step's code as well, while the next step's code works?"""
    user = make_user("technician")
    phone, _ = enrol(user, clock)
    used = phone.code()
    sign_in_with_code(app, user, used)
    thief = browser(app, "198.51.100.4")
    assert password_step(thief, user.email).status_code == 303
    assert code_step(thief, used).status_code == 401
    assert code_step(thief, phone.code(-1)).status_code == 401  # still in the drift window
    assert not signed_in(thief)
    clock.now += 30
    sign_in_with_code(app, user, phone.code())


def test_the_confirming_code_cannot_sign_in(app, clock):
    """Is the code that turned two-step sign-in on refused as a sign-in code?"""
    user = make_user("viewer")
    actor = Actor(user, via="console")
    phone = App(two_factor.begin(actor)["key"], clock)
    two_factor.confirm(actor, phone.code())
    client = browser(app)
    password_step(client, user.email)
    assert code_step(client, phone.code()).status_code == 401


def test_a_recovery_code_signs_in_once(app, clock):
    """Does a recovery code (typed in capitals, without dashes) sign in once, audited with the
    codes left, and is it refused the second time?"""
    user = make_user("technician")
    _, codes = enrol(user, clock)
    typed = codes[3].replace("-", "").upper()
    sign_in_with_code(app, user, typed)
    assert actions("auth.login")[-1] == ("auth.login", user.email,
                                        {"second_factor": "recovery code",
                                         "recovery_codes_left": 9})
    again = browser(app)
    password_step(again, user.email)
    assert code_step(again, codes[3]).status_code == 401
    assert not signed_in(again)
    sign_in_with_code(app, user, codes[4])
    other = make_user("viewer")  # someone else's code is no code of this user
    _, theirs = enrol(other, clock)
    client = browser(app)
    password_step(client, user.email)
    assert code_step(client, theirs[0]).status_code == 401


def test_the_code_page_needs_a_password_first_and_lapses(app, clock, monkeypatch):
    """Is the code page without a right password (or after it lapsed) sent back to the
    password, and is a user signed out everywhere meanwhile refused?"""
    user = make_user("viewer")
    phone, _ = enrol(user, clock)
    client = browser(app)
    response = client.get("/login/code")
    assert response.status_code == 400 and "Enter your email and password again" in \
        response.get_data(as_text=True)
    password_step(client, user.email)
    from portal.blueprints.auth import two_factor as second_step
    monkeypatch.setattr(second_step, "PENDING_SECONDS", -1)
    assert client.get("/login/code").status_code == 400
    monkeypatch.setattr(second_step, "PENDING_SECONDS", 300)
    password_step(client, user.email)
    db.session.get(User, user.id).end_sessions()
    db.session.commit()
    response = client.post("/login/code", data={"code": phone.code(), "csrf_token": csrf_from(
        client.get("/login").get_data(as_text=True))})
    assert response.status_code == 400 and not signed_in(client)


def test_people_without_it_sign_in_with_the_password_alone(app, clock):
    """Is a person without two-step sign-in signed in by the password, as before?"""
    user = make_user("viewer")
    client = browser(app)
    response = password_step(client, user.email)
    assert response.status_code == 303 and "/login/code" not in response.headers["Location"]
    assert signed_in(client)


def test_the_api_token_exchange_needs_the_code(app, clock):
    """Does POST /api/v1/tokens ask an account with two-step sign-in for `code`, refuse a wrong
    one, and give a token for the right one?"""
    user = make_user("technician")
    phone, _ = enrol(user, clock)
    client = browser(app)
    body = {"email": user.email, "password": PASSWORD, "name": "script"}
    response = client.post("/api/v1/tokens", json=body)
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "second_factor_required"
    response = client.post("/api/v1/tokens", json={**body, "code": phone.wrong()})
    assert response.get_json()["error"]["code"] == "invalid_code"
    response = client.post("/api/v1/tokens", json={**body, "code": phone.code()})
    assert response.status_code == 201 and response.get_json()["token"].startswith("dpt_")


# --- throttling ----------------------------------------------------------------------------

def test_wrong_codes_count_as_failed_sign_ins(app, clock):
    """Do wrong codes count toward the throttling of that account from that address (so the
    right password does not buy more guesses, and even the right code waits), while the person
    still signs in from elsewhere?"""
    user = make_user("admin")
    phone, _ = enrol(user, clock)
    attacker = browser(app, "203.0.113.7")
    assert password_step(attacker, user.email).status_code == 303
    for _ in range(3):  # DEPOT_LOGIN_FREE_FAILURES = 3 in tests
        assert code_step(attacker, phone.wrong()).status_code == 401
    refused = code_step(attacker, phone.code())
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    assert "Too many failed sign-ins to this account from this address" in \
        refused.get_data(as_text=True)
    assert password_step(attacker, user.email).status_code == 429  # the password step too
    sign_in_with_code(app, user, phone.code(), address="198.51.100.20")
    throttled = actions("auth.login_throttled")
    assert throttled and throttled[0][2] == {"limit": "account and address"}


# --- admins must use it --------------------------------------------------------------------

@pytest.fixture
def required(app):
    app.config["DEPOT_REQUIRE_2FA_ADMINS"] = True


def test_an_admin_without_it_is_sent_to_set_it_up(app, clock, required):
    """With DEPOT_REQUIRE_2FA_ADMINS, is an admin without an authenticator sent to Settings,
    Security after the password, refused everything else (pages, htmx, forms, the API's token
    exchange) until it is set up, and free afterwards? Are technicians left alone?"""
    admin = make_user("admin")
    client = browser(app)
    assert password_step(client, admin.email).status_code == 303
    response = client.get("/jobs/")
    assert response.status_code == 303 and response.headers["Location"].endswith(
        "/settings/security")
    console = console_for(client, admin)
    assert "Admins must use two-step sign-in here" in console.get(
        "/settings/security").get_data(as_text=True)
    assert console.get("/notifications/bell", hx=True).status_code == 204  # nothing, no flash
    assert console.post("/settings/tokens", {"name": "sneaky"}).status_code == 403
    assert console.get("/settings/users").status_code == 303
    response = client.post("/api/v1/tokens", json={"email": admin.email, "password": PASSWORD})
    assert response.status_code == 403 and "two-step" in response.get_json()["error"]["message"]
    assert actions("auth.login_refused") == [("auth.login_refused", admin.email,
                                              {"reason": "two-step sign-in not set up"})]

    page = console.post("/settings/security/setup").get_data(as_text=True)
    key = re.search(r'<code id="totp-key">([^<]+)</code>', page).group(1).replace(" ", "")
    assert console.post("/settings/security/confirm",
                        {"code": App(key, clock).code()}).status_code == 200
    assert console.get("/jobs/").status_code == 200
    assert console.post("/logout").status_code == 303

    tech = make_user("technician")
    other = browser(app)
    password_step(other, tech.email)
    assert other.get("/jobs/").status_code == 200


def test_the_setting_off_asks_nothing_of_admins(app, clock):
    """Without the setting, does an admin without an authenticator use the console freely?"""
    admin = make_user("admin")
    client = browser(app)
    password_step(client, admin.email)
    assert client.get("/settings/users").status_code == 200


# --- turning it off, resetting -------------------------------------------------------------

def test_turning_it_off_needs_the_password_and_a_code(app, clock):
    """Is turning off refused with a wrong password or a wrong code (audited, still on), and
    done with both right, after which the password alone signs in?"""
    user = make_user("technician")
    phone, _ = enrol(user, clock)
    console = sign_in_with_code(app, user, phone.code())
    clock.now += 30
    refused = console.post("/settings/security/disable", {"password": "nope nope nope",
                                                           "code": phone.code()})
    assert refused.status_code == 401
    assert "The password or the code is not right." in refused.get_data(as_text=True)
    assert console.post("/settings/security/disable",
                        {"password": PASSWORD, "code": phone.wrong()}).status_code == 401
    assert console.post("/settings/security/disable", {"password": PASSWORD}).status_code == 400
    db.session.expire_all()
    assert two_factor.enabled(db.session.get(User, user.id))
    done = console.post("/settings/security/disable", {"password": PASSWORD,
                                                       "code": phone.code()})
    assert done.status_code == 200 and "Off: your password alone" in done.get_data(as_text=True)
    assert db.session.scalars(select(RecoveryCode)).all() == []
    client = browser(app)
    password_step(client, user.email)
    assert signed_in(client)
    assert [a for a, _, _ in actions("auth.2fa_disable")] == [
        "auth.2fa_disable_refused", "auth.2fa_disable_refused", "auth.2fa_disable"]


def test_new_recovery_codes_replace_the_old_ones(app, clock):
    """Do new recovery codes (for a current code) replace the old ones, which stop working?"""
    user = make_user("viewer")
    phone, old = enrol(user, clock)
    console = sign_in_with_code(app, user, phone.code())
    assert console.post("/settings/security/recovery-codes",
                        {"code": phone.wrong()}).status_code == 401
    clock.now += 30
    page = console.post("/settings/security/recovery-codes", {"code": phone.code()})
    new = re.findall(r"<li><code>([a-z2-9-]+)</code></li>", page.get_data(as_text=True))
    assert len(new) == 10 and not set(new) & set(old)
    client = browser(app)
    password_step(client, user.email)
    assert code_step(client, old[0]).status_code == 401
    assert code_step(client, new[0]).status_code == 303


def test_an_admin_resets_someone_elses(app, login_as, clock):
    """Can an admin reset another person's two-step sign-in (their key and codes gone, their
    sessions ended, audited), but not their own here, and a technician nobody's?"""
    admin = login_as("admin")
    user = make_user("technician")
    phone, _ = enrol(user, clock)
    theirs = sign_in_with_code(app, user, phone.code())
    users_page = admin.get("/settings/users").get_data(as_text=True)
    assert f"/settings/users/{user.id}/two-factor/reset" in users_page
    assert theirs.post(f"/settings/users/{admin.user.id}/two-factor/reset").status_code == 403
    response = admin.post(f"/settings/users/{user.id}/two-factor/reset")
    assert response.status_code == 303
    assert not signed_in(theirs.client)
    db.session.expire_all()
    reset_user = db.session.get(User, user.id)
    assert reset_user.totp_secret is None and not two_factor.enabled(reset_user)
    assert db.session.scalars(select(RecoveryCode).where(RecoveryCode.user_id == user.id)).all() \
        == []
    assert actions("auth.2fa_reset") == [("auth.2fa_reset", user.email, {"sessions_ended": True})]
    assert admin.post(f"/settings/users/{user.id}/two-factor/reset").status_code == 409
    phone, _ = enrol(admin.user, clock)
    admin = sign_in_with_code(app, admin.user, phone.code())
    own = admin.post(f"/settings/users/{admin.user.id}/two-factor/reset")
    assert own.status_code == 403 and "Settings, Security" in own.get_data(as_text=True)
    client = browser(app)
    password_step(client, user.email)
    assert signed_in(client)  # the password alone, until they set it up again


def test_an_unreadable_key_says_what_to_do(app, clock):
    """If DEPOT_ENCRYPTION_KEY changed without a rotation, does the code step say the key cannot
    be decrypted and that an admin resets it (no sign-in, no bare 500 page)?"""
    user = make_user("viewer")
    phone, _ = enrol(user, clock)
    client = browser(app)
    password_step(client, user.email)
    app.config["DEPOT_ENCRYPTION_KEY"] = "another-key-0123456789"
    response = code_step(client, phone.code())
    text = response.get_data(as_text=True)
    assert response.status_code == 500 and not signed_in(client)
    assert f"the authenticator key of {user.email} cannot be decrypted" in text
    assert "have an admin reset their two-step sign-in" in text


def test_deleting_a_user_deletes_their_recovery_codes(app, login_as, clock):
    """Do a deleted person's recovery codes go with them?"""
    admin = login_as("admin")
    user = make_user("viewer")
    enrol(user, clock)
    assert admin.post(f"/settings/users/{user.id}/delete").status_code == 303
    assert db.session.scalars(select(RecoveryCode)).all() == []
