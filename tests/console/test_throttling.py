"""Sign-in throttling per account from an address, per address, and per account, such that
failures from one address can never lock a person out from another; audited."""
import pytest

from portal.extensions import db
from portal.models import AuditEvent
from portal.core.errors import DepotError
from portal.services.sign_in_limits import address_bucket, in_words
from portal.web.errors import retry_after
from tests.factories import PASSWORD, make_user
from tests.helpers import csrf_from

WRONG = "wrong password"


@pytest.fixture
def config_overrides():
    return {"DEPOT_LOGIN_ADDRESS_LIMIT": 8, "DEPOT_LOGIN_ACCOUNT_CEILING": 5,
            "DEPOT_LOGIN_ACCOUNT_DELAY": 30, "DEPOT_LOGIN_WINDOW": 900}


def browser(app, address):
    """A test client whose requests come from this address."""
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def login(client, email, password):
    token = csrf_from(client.get("/login").get_data(as_text=True))
    return client.post("/login", data={"email": email, "password": password, "csrf_token": token})


def api_login(client, email, password):
    return client.post("/api/v1/tokens", json={"email": email, "password": password, "name": "t"})


def test_failures_from_one_address_leave_the_account_open_from_another(app):
    """After failures on an admin from address A (enough to slow A down, and past the account's
    ceiling), does the admin still sign in from address B at the first try?"""
    admin = make_user("admin")
    attacker = browser(app, "203.0.113.7")
    for _ in range(5):
        response = login(attacker, admin.email, WRONG)
    assert response.status_code == 429
    assert "Too many failed sign-ins to this account from this address" in response.get_data(
        as_text=True)
    assert login(attacker, admin.email, PASSWORD).status_code == 429  # even the right one, at A
    assert login(browser(app, "198.51.100.20"), admin.email, PASSWORD).status_code == 303


def test_an_address_spraying_passwords_over_accounts_is_stopped(app):
    """Does an address that fails on many accounts (a few tries each, under the per-account
    limit) get refused for every account, told for how many minutes, with Retry-After, while
    other addresses sign in?"""
    users = [make_user("viewer") for _ in range(4)]
    sprayer = browser(app, "203.0.113.9")
    for user in users:
        for _ in range(2):
            assert login(sprayer, user.email, WRONG).status_code == 401
    response = login(sprayer, users[0].email, PASSWORD)
    assert response.status_code == 429
    text = response.get_data(as_text=True)
    assert "Too many failed sign-ins from this address. Try again in 15 minutes." in text
    assert 800 < int(response.headers["Retry-After"]) <= 900
    unrelated = make_user("viewer")
    assert login(sprayer, unrelated.email, PASSWORD).status_code == 429  # A overall
    assert login(browser(app, "198.51.100.20"), users[0].email, PASSWORD).status_code == 303


def test_the_api_token_exchange_shares_the_address_limit(app):
    """Is the API's email-and-password exchange counted and refused per address like the
    console, with a JSON 429?"""
    users = [make_user("viewer") for _ in range(4)]
    client = browser(app, "203.0.113.11")
    for user in users:
        for _ in range(2):
            assert api_login(client, user.email, WRONG).status_code == 401
    response = api_login(client, users[1].email, PASSWORD)
    assert response.status_code == 429
    assert response.get_json()["error"]["code"] == "too_many_attempts"
    assert "from this address" in response.get_json()["error"]["message"]
    assert login(client, users[1].email, PASSWORD).status_code == 429
    assert api_login(browser(app, "198.51.100.4"), users[1].email, PASSWORD).status_code == 201


def test_an_account_under_attack_from_many_addresses_only_spaces_tries(app):
    """Past the account's ceiling (failures from many addresses), is an address that has failed
    on it made to wait between tries, and a fresh address never kept out?"""
    admin = make_user("admin")
    for n in range(5):
        assert login(browser(app, f"203.0.113.{20 + n}"), admin.email, WRONG).status_code == 401
    once = browser(app, "198.51.100.30")
    assert login(once, admin.email, WRONG).status_code == 401
    response = login(once, admin.email, PASSWORD)
    assert response.status_code == 429
    assert "Try again in 30 seconds." in response.get_data(as_text=True)
    assert login(browser(app, "198.51.100.31"), admin.email, PASSWORD).status_code == 303


def test_a_right_password_resets_only_its_own_address(app):
    """Does signing in clear the failures of this address on this account, but not the address's
    count (signing in to one's own account between guesses must not reset a spray)?"""
    mine, victims = make_user("viewer"), [make_user("viewer"), make_user("viewer")]
    client = browser(app, "203.0.113.40")
    for _ in range(2):
        assert login(client, mine.email, WRONG).status_code == 401
    assert api_login(client, mine.email, PASSWORD).status_code == 201  # (stays signed out)
    for _ in range(2):
        assert login(client, mine.email, WRONG).status_code == 401  # free tries again
    for victim in victims:  # 8 failures from this address in all: its limit
        for _ in range(2):
            assert login(client, victim.email, WRONG).status_code == 401
    assert "from this address" in api_login(client, mine.email, PASSWORD).get_json()["error"][
        "message"]


def test_failed_and_throttled_sign_ins_are_audited(app):
    """Is every failed sign-in audited (why, from where, by nobody), and each limit reached,
    without an audit row per refused try?"""
    admin = make_user("admin")
    client = browser(app, "203.0.113.50")
    login(client, "nobody@example.com", WRONG)
    for _ in range(3):
        login(client, admin.email, WRONG)
    for _ in range(3):
        assert login(client, admin.email, WRONG).status_code == 429
    rows = [(e.action, e.actor, e.target, e.ip, e.details)
            for e in db.session.query(AuditEvent).order_by(AuditEvent.id)
            if e.action.startswith("auth.")]
    failed = ("auth.login_failed", "anonymous")
    assert rows == [
        (*failed, "nobody@example.com", "203.0.113.50", {"reason": "unknown email"}),
        (*failed, admin.email, "203.0.113.50", {"reason": "wrong password"}),
        (*failed, admin.email, "203.0.113.50", {"reason": "wrong password"}),
        (*failed, admin.email, "203.0.113.50", {"reason": "wrong password"}),
        ("auth.login_throttled", "anonymous", admin.email, "203.0.113.50",
         {"limit": "account and address"}),
    ]


def test_a_disabled_account_fails_like_a_wrong_password(app, api_as):
    """Is a disabled user's right password the generic failure, audited with why?"""
    user = make_user("viewer")
    api_as("admin").patch(f"/api/v1/users/{user.id}", json={"active": False})
    response = login(browser(app, "203.0.113.60"), user.email, PASSWORD)
    assert response.status_code == 401
    assert "Invalid email or password." in response.get_data(as_text=True)
    [event] = db.session.query(AuditEvent).filter_by(action="auth.login_failed").all()
    assert event.details == {"reason": "disabled"}


@pytest.mark.parametrize("seconds, words", [(1, "1 second"), (59, "59 seconds"),
                                            (60, "1 minute"), (61, "2 minutes"),
                                            (900, "15 minutes")])
def test_waits_are_told_in_words(seconds, words):
    assert in_words(seconds) == words


def test_an_ipv6_network_counts_as_one_address(app):
    """Do failures from many addresses of one IPv6 /64 count as one address (a host cannot take
    a fresh address per try), another /64 being unaffected?"""
    users = [make_user("viewer") for _ in range(4)]
    for n, user in enumerate(users):
        for k in range(2):
            client = browser(app, f"2001:db8:1:2::{n * 2 + k + 1:x}")
            assert login(client, user.email, WRONG).status_code == 401
    response = login(browser(app, "2001:db8:1:2:ffff::9"), users[0].email, PASSWORD)
    assert "from this address" in response.get_data(as_text=True)
    assert login(browser(app, "2001:db8:1:3::1"), users[0].email, PASSWORD).status_code == 303


@pytest.mark.parametrize("address, bucket", [
    ("203.0.113.7", "203.0.113.7"), ("::ffff:203.0.113.7", "203.0.113.7"),
    ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"), ("fe80::1%eth0", "fe80::/64"),
    (None, "unknown"), ("not-an-address", "not-an-address"),
])
def test_what_an_address_counts_as(address, bucket):
    assert address_bucket(address) == bucket


@pytest.mark.parametrize("wait, header", [(30, "30"), (2.5, "3"), (0.2, "1"), (None, None),
                                          (0, None), (-5, None), (float("inf"), None),
                                          (float("nan"), None), (True, None), ("30", None)])
def test_retry_after_is_whole_seconds_from_one_place(wait, header):
    """Is Retry-After (sign-in pages, the code page, every JSON error) whole seconds, at least
    one, and left out when the wait is none or no number?"""
    exc = DepotError("wait")
    exc.retry_after = wait
    assert retry_after(exc).get("Retry-After") == header
