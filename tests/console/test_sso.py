"""Single sign-on through an OpenID Connect provider (a local one: tests/fakes/oidc_server.py,
real HTTP on a loopback port): the whole flow from "Sign in with" to the dashboard, the id_token
checks (issuer, nonce, signature, state), the role and sites mapped from groups on every sign-in,
the refusals (unmapped group, unverified email, disabled account, last admin) each audited, and
local passwords still working."""
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from portal.extensions import db
from portal.models import AuditEvent, User
from portal.services import sso
from tests.factories import PASSWORD, make_user
from tests.fakes.oauth_server import CLIENT_ID, CLIENT_SECRET
from tests.fakes.oidc_server import FakeOidcProvider, rsa_key
from tests.helpers import csrf_from

ROLE_MAP = {"Depot-Admins": "admin", "Depot-Techs": "technician", "Depot-Viewers": "viewer"}
SITE_MAP = {"Depot-Seattle": ["Seattle"], "Depot-West": ["Portland", "Seattle"]}


@pytest.fixture(scope="module")
def provider():
    fake = FakeOidcProvider().start()
    yield fake
    fake.stop()


@pytest.fixture
def oidc(app, provider):
    """The fake provider, reset, and the app set up to sign in with it."""
    provider.people.clear()
    provider.users.clear()
    provider.next_user = None
    provider.token_issuer = provider.token_nonce = None
    provider.signing_key = provider.key
    provider.token_audience, provider.token_lifetime = CLIENT_ID, 3600
    app.config.update(DEPOT_OIDC_ISSUER=provider.issuer, DEPOT_OIDC_CLIENT_ID=CLIENT_ID,
                      DEPOT_OIDC_CLIENT_SECRET=CLIENT_SECRET, DEPOT_OIDC_NAME="Contoso",
                      DEPOT_OIDC_ROLE_MAP=ROLE_MAP, DEPOT_OIDC_SITE_MAP=SITE_MAP)
    return provider


def person(oidc, user_id="ann", email="ann@contoso.example", groups=("Depot-Techs",), **claims):
    claims = {"email": email, "email_verified": True, "groups": list(groups), **claims}
    return oidc.add_person(user_id, **claims)


def start(client, next_path=None):
    """Press "Sign in with": the console's answer (303 to the provider's authorize endpoint)."""
    page = client.get("/login").get_data(as_text=True)
    assert "Sign in with Contoso" in page
    url = "/login/sso" + (f"?next={next_path}" if next_path else "")
    return client.post(url, data={"csrf_token": csrf_from(page)})


def sso_sign_in(app, oidc, user_id="ann", client=None, next_path=None):
    """The whole flow, the browser's part followed by hand: (client, the callback's answer)."""
    client = client or app.test_client()
    started = start(client, next_path)
    assert started.status_code == 303, started.get_data(as_text=True)
    oidc.next_user = user_id
    with requests.get(started.headers["Location"], allow_redirects=False, timeout=10) as answer:
        assert answer.status_code == 302, answer.text
        back = urlsplit(answer.headers["Location"])
    assert back.path == "/login/sso/callback"
    return client, client.get(f"{back.path}?{back.query}")


def signed_in(client) -> bool:
    return client.get("/").status_code == 200


def events(*names):
    return [(e.action, e.target, e.via, e.details) for e in
            db.session.query(AuditEvent).order_by(AuditEvent.id) if e.action in names]


def user_named(email):
    return db.session.query(User).filter_by(email=email).one_or_none()


def test_the_whole_flow_creates_the_user_with_the_mapped_role_and_sites(app, oidc):
    """Does "Sign in with Contoso" go through the provider (PKCE S256, nonce, state) and back,
    sign in a new user as the groups say (highest role, every mapped group's sites), and audit
    it? Is the provider's authorize origin allowed as a form target by the CSP?"""
    person(oidc, groups=["Depot-Viewers", "Depot-Techs", "Depot-Seattle", "Marketing"])
    client = app.test_client()
    started = start(client)
    query = parse_qs(urlsplit(started.headers["Location"]).query)
    assert started.headers["Location"].startswith(oidc.url + oidc.authorize_path)
    assert query["code_challenge_method"] == ["S256"] and query["nonce"][0]
    assert query["state"][0] and query["scope"] == ["openid email profile"]
    assert query["redirect_uri"] == ["http://localhost/login/sso/callback"]
    csp = client.get("/login").headers["Content-Security-Policy"]
    form_action = next(d for d in csp.split(";") if d.strip().startswith("form-action"))
    assert oidc.url in form_action.split()
    client, answer = sso_sign_in(app, oidc, client=client)
    assert answer.status_code == 303 and answer.headers["Location"] == "/"
    assert signed_in(client)
    user = user_named("ann@contoso.example")
    assert (user.role, user.sites, user.active) == ("technician", ["Seattle"], True)
    login = events("auth.sso_login")
    assert len(login) == 1 and login[0][:3] == ("auth.sso_login", user.email, "sso")
    assert login[0][3]["created"] is True and login[0][3]["issuer"] == oidc.issuer
    assert events("user.create")[0][3] == {"role": "technician", "sites": ["Seattle"]}


def test_next_is_kept_but_only_inside_the_console(app, oidc):
    """Does sign-in land on the page asked for, and never on another site?"""
    person(oidc)
    _, answer = sso_sign_in(app, oidc, next_path="/computers")
    assert answer.headers["Location"] == "/computers"
    _, answer = sso_sign_in(app, oidc, next_path="//evil.example/x")
    assert answer.headers["Location"] == "/"


def test_role_and_sites_follow_the_groups_on_every_sign_in(app, oidc):
    """Does an existing (local) user matched by email take the role and sites of their groups,
    again at each sign-in, a change of role ending their other sessions, each change audited?"""
    local = make_user("viewer", email="ann@contoso.example", sites=["Tacoma"])
    make_user("admin")  # so Ann may stop being an admin below
    person(oidc, groups=["Depot-Admins", "Depot-West"])
    first, answer = sso_sign_in(app, oidc)
    assert answer.status_code == 303 and signed_in(first)
    db.session.refresh(local)
    assert (local.role, local.sites) == ("admin", ["Portland", "Seattle"])
    oidc.people["ann"]["groups"] = ["Depot-Viewers"]
    second, _ = sso_sign_in(app, oidc)
    db.session.refresh(local)
    assert (local.role, local.sites) == ("viewer", [])
    assert signed_in(second) and not signed_in(first)  # the admin session ended with the role
    updates = [d for *_, d in events("user.update")]
    assert [u["fields"] for u in updates] == [["role", "sites"], ["role", "sites"]]
    assert updates[1]["sessions_ended"] is True
    assert db.session.query(User).count() == 2  # no one created: matched by email


def test_app_roles_from_another_claim(app, oidc):
    """Entra ID's app roles: with DEPOT_OIDC_GROUPS_CLAIM=roles, the `roles` claim maps."""
    app.config["DEPOT_OIDC_GROUPS_CLAIM"] = "roles"
    person(oidc, groups=["Depot-Admins"], roles=["Depot-Viewers"])
    _, answer = sso_sign_in(app, oidc)
    assert answer.status_code == 303
    assert user_named("ann@contoso.example").role == "viewer"


def refused(client, answer, reason):
    """Was the sign-in refused with a page saying so, nobody signed in, the refusal audited?"""
    assert answer.status_code == 403, answer.get_data(as_text=True)
    assert "You were not signed in with Contoso" in answer.get_data(as_text=True)
    assert not signed_in(client)
    found = events("auth.sso_refused")
    assert found and found[-1][3]["reason"] == reason and found[-1][2] == "sso"
    assert not events("auth.sso_login")
    return found[-1]


def test_an_id_token_from_another_issuer_is_refused(app, oidc):
    """An id_token whose `iss` is not DEPOT_OIDC_ISSUER exactly (another tenant of the same
    provider, the same key) signs nobody in."""
    person(oidc)
    oidc.token_issuer = oidc.issuer.replace("11111111", "99999999")
    client, answer = sso_sign_in(app, oidc)
    event = refused(client, answer, "invalid answer")
    assert "iss" in event[3]["error"]
    assert user_named("ann@contoso.example") is None


def test_an_issuer_differing_only_by_a_slash_is_refused(app, oidc):
    person(oidc)
    oidc.token_issuer = oidc.issuer + "/"
    client, answer = sso_sign_in(app, oidc)
    refused(client, answer, "invalid answer")


def test_a_wrong_nonce_is_refused(app, oidc):
    """An id_token carrying another request's nonce (a replay) signs nobody in."""
    person(oidc)
    oidc.token_nonce = "nonce-of-another-sign-in"
    client, answer = sso_sign_in(app, oidc)
    event = refused(client, answer, "invalid answer")
    assert "nonce" in event[3]["error"]


@pytest.mark.parametrize("setting, value, error", [
    ("token_audience", "another-app", "aud"),
    ("token_audience", ["another-app", "third-app"], "aud"),
    ("token_lifetime", -600, "expired"),  # past Authlib's 120 s leeway
])
def test_an_id_token_for_another_app_or_expired_is_refused(app, oidc, setting, value, error):
    """An id_token whose audience is not Depot (even one naming Depot as its authorized party,
    which Authlib alone would take) or that has expired signs nobody in."""
    person(oidc, azp=CLIENT_ID)
    setattr(oidc, setting, value)
    client, answer = sso_sign_in(app, oidc)
    event = refused(client, answer, "invalid answer")
    assert error in event[3]["error"]


def test_an_id_token_signed_with_an_unknown_key_is_refused(app, oidc):
    person(oidc)
    oidc.signing_key = rsa_key("depot-test-key")  # same kid, not the key in the JWKS
    client, answer = sso_sign_in(app, oidc)
    refused(client, answer, "invalid answer")


def test_a_callback_without_the_state_of_this_browser_is_refused(app, oidc):
    """A code sent to another browser (login CSRF) finds no state in its session."""
    person(oidc)
    victim = app.test_client()
    started = start(app.test_client())  # the attacker's own start
    oidc.next_user = "ann"
    with requests.get(started.headers["Location"], allow_redirects=False, timeout=10) as answer:
        back = urlsplit(answer.headers["Location"])
    refused(victim, victim.get(f"{back.path}?{back.query}"), "invalid answer")


def test_an_error_from_the_provider_is_refused(app, oidc):
    client = app.test_client()
    start(client)
    answer = client.get("/login/sso/callback?error=access_denied&state=x")
    event = refused(client, answer, "invalid answer")
    assert "access_denied" in event[3]["error"]


def test_no_mapped_group_is_refused_with_a_clear_page(app, oidc):
    person(oidc, groups=["Marketing", "Depot-Seattle"])  # a site group gives no role
    client, answer = sso_sign_in(app, oidc)
    event = refused(client, answer, "no mapped group")
    assert "None of your groups at Contoso is allowed into Depot" in answer.get_data(as_text=True)
    assert event[1] == "ann@contoso.example"
    assert event[3]["groups"] == ["Marketing", "Depot-Seattle"]
    assert user_named("ann@contoso.example") is None


@pytest.mark.parametrize("claims", [{"email_verified": False}, {"email_verified": "true"},
                                    {"email_verified": None}])
def test_an_unverified_email_is_refused(app, oidc, claims):
    """Only a provider's `email_verified: true` matches an account by email."""
    make_user("admin", email="ann@contoso.example")
    person(oidc, groups=["Depot-Admins"], **claims)
    client, answer = sso_sign_in(app, oidc)
    refused(client, answer, "email not verified")
    assert "has not verified your email address" in answer.get_data(as_text=True)


def test_the_verified_claim_is_a_setting(app, oidc):
    """Entra ID says a verified email with `xms_edov` (email domain owner verified)."""
    app.config["DEPOT_OIDC_EMAIL_VERIFIED_CLAIM"] = "xms_edov"
    person(oidc, email_verified=False, xms_edov=True)
    _, answer = sso_sign_in(app, oidc)
    assert answer.status_code == 303


def test_no_email_is_refused(app, oidc):
    oidc.add_person("ann", groups=["Depot-Admins"])
    client, answer = sso_sign_in(app, oidc)
    event = refused(client, answer, "no email")
    assert event[1] == "sub-ann"


def test_a_disabled_account_is_refused(app, oidc):
    user = make_user("technician", email="ann@contoso.example")
    user.active = False
    db.session.commit()
    person(oidc)
    client, answer = sso_sign_in(app, oidc)
    refused(client, answer, "disabled")


def test_the_last_admin_is_not_demoted_by_groups(app, oidc):
    """The break-glass admin signing in with a viewer's groups stays admin (refused, audited)."""
    admin = make_user("admin", email="ann@contoso.example")
    person(oidc, groups=["Depot-Viewers"])
    client, answer = sso_sign_in(app, oidc)
    refused(client, answer, "last admin")
    db.session.refresh(admin)
    assert admin.role == "admin"


def test_the_password_form_still_signs_in(app, oidc):
    """Local accounts stay as break-glass: the password form is on the page and works."""
    user = make_user("admin")
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    assert 'name="password"' in page and "Sign in with Contoso" in page
    answer = client.post("/login", data={"email": user.email, "password": PASSWORD,
                                         "csrf_token": csrf_from(page)})
    assert answer.status_code == 303 and signed_in(client)


def test_without_settings_there_is_no_button_and_no_flow(app):
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    assert "Sign in with" not in page
    answer = client.post("/login/sso", data={"csrf_token": csrf_from(page)})
    assert answer.status_code == 503 and "not set up" in answer.get_data(as_text=True)
    assert client.get("/login/sso/callback?code=x&state=y").status_code == 503


def test_the_start_needs_the_csrf_token(app, oidc):
    assert app.test_client().post("/login/sso").status_code == 400


def test_a_provider_that_does_not_answer(app, oidc):
    """Discovery failing: a page saying so (502), the password form still there to use."""
    app.config["DEPOT_OIDC_ISSUER"] = "http://127.0.0.1:9/nothing"
    client = app.test_client()
    answer = start(client)
    assert answer.status_code == 502
    assert "could not reach the sign-in provider" in answer.get_data(as_text=True)


@pytest.mark.parametrize("setting, value, message", [
    ("DEPOT_OIDC_ROLE_MAP", "{not json", "not valid JSON"),
    ("DEPOT_OIDC_ROLE_MAP", {"Depot-Admins": "root"}, "must be one of"),
    ("DEPOT_OIDC_ROLE_MAP", {}, "nobody could sign in"),
    ("DEPOT_OIDC_SITE_MAP", {"Depot-Seattle": 3}, "must map to a list of sites"),
    ("DEPOT_OIDC_SITE_MAP", {"Depot-Seattle": [""]}, "Depot-Seattle: site name"),
])
def test_wrong_settings_say_what_is_wrong(app, oidc, setting, value, message):
    app.config[setting] = value
    with pytest.raises(sso.SsoNotConfigured, match=message):
        sso.settings(app.config)
    answer = start(app.test_client())
    assert answer.status_code == 503 and message in answer.get_data(as_text=True)


def test_role_and_sites_of_groups():
    settings = sso.Settings("https://i", "c", "s", "X", "openid", "groups", "email_verified",
                            ROLE_MAP, SITE_MAP)
    assert sso.access_for(["Depot-Viewers", "Depot-Admins"], settings) == ("admin", [])
    assert sso.access_for(["Depot-Seattle", "Depot-West", "Depot-Techs"], settings) == \
        ("technician", ["Portland", "Seattle"])
    assert sso.access_for(["Depot-Seattle"], settings) == (None, ["Seattle"])
    assert sso.groups_of({"groups": "Depot-Techs"}, settings) == ["Depot-Techs"]
    assert sso.groups_of({"groups": {"a": 1}}, settings) == []


def test_admins_required_to_use_two_step_are_not_held_back_after_single_sign_on(app, oidc):
    """With DEPOT_REQUIRE_2FA_ADMINS=1, does an admin signed in by the provider (whose own second
    factor applies) reach the console, while the same admin by password is sent to set up an
    authenticator?"""
    app.config["DEPOT_REQUIRE_2FA_ADMINS"] = True
    try:
        person(oidc, groups=["Depot-Admins"])
        client, answer = sso_sign_in(app, oidc)
        assert answer.status_code == 303
        assert client.get("/").status_code == 200
        client.post("/logout", data={"csrf_token": csrf_from(
            client.get("/").get_data(as_text=True))})
        admin = make_user("admin")
        page = client.get("/login").get_data(as_text=True)
        client.post("/login", data={"email": admin.email, "password": PASSWORD,
                                    "csrf_token": csrf_from(page)})
        gated = client.get("/")
        assert gated.status_code == 303 and "/settings/security" in gated.headers["Location"]
    finally:
        app.config["DEPOT_REQUIRE_2FA_ADMINS"] = False
