"""Behind a reverse proxy: X-Forwarded-* believed only as far as DEPOT_TRUSTED_PROXIES says, and
cookies marked Secure when the console is reached over HTTPS."""
import pytest

from portal import create_app
from portal.models import AuditEvent
from portal.web.proxies import BadSetting, init_app, secure_cookies, trusted_proxies
from tests.factories import PASSWORD, make_user
from tests.helpers import Console, csrf_from

# What a proxy adds to every request of a browser behind it (the client claimed 198.51.100.1),
# and the Referer the browser sends (Flask-WTF checks it on HTTPS).
FORWARDED = {"HTTP_X_FORWARDED_FOR": "198.51.100.1, 203.0.113.7", "HTTP_X_FORWARDED_PROTO": "https",
             "HTTP_X_FORWARDED_HOST": "depot.example.com",
             "HTTP_REFERER": "https://depot.example.com/"}


def proxied_console(app) -> Console:
    """An admin signed in through the login form, every request carrying FORWARDED."""
    user = make_user("admin")
    client = app.test_client()
    client.environ_base.update(FORWARDED)
    token = csrf_from(client.get("/login").get_data(as_text=True))
    response = client.post("/login", data={"email": user.email, "password": PASSWORD,
                                           "csrf_token": token})
    assert response.status_code == 303
    return Console(client, user, csrf_from(client.get("/").get_data(as_text=True)))


def token_ip(console) -> str:
    """Create an API token; the address its audit event recorded."""
    response = console.post("/settings/tokens", {"name": "script"}, hx=True)
    assert response.status_code == 200
    return AuditEvent.query.filter_by(action="token.create").one().ip


def enrollment_page(console) -> str:
    """The enrollment page, which tells agents the server's address."""
    return console.get("/settings/enrollment").get_data(as_text=True)


class TestWithoutTrustedProxies:
    def test_forwarded_headers_are_ignored(self, app):
        """Anyone can send X-Forwarded-*: by default, are the address, scheme and host the
        connection's own?"""
        console = proxied_console(app)
        assert token_ip(console) == "127.0.0.1"
        html = enrollment_page(console)
        assert "depot.example.com" not in html and "http://localhost" in html

    def test_cookies_are_not_secure_over_plain_http(self, app, client):
        user = make_user("admin")
        response = client.post("/login", data={
            "email": user.email, "password": PASSWORD,
            "csrf_token": csrf_from(client.get("/login").get_data(as_text=True))})
        assert response.status_code == 303
        assert all("Secure" not in c for c in response.headers.getlist("Set-Cookie"))


class TestBehindOneProxy:
    @pytest.fixture
    def config_overrides(self):
        return {"DEPOT_TRUSTED_PROXIES": "1"}

    def test_the_client_scheme_and_host_come_from_the_proxy(self, app):
        """Is the address the one the trusted proxy saw (the last in X-Forwarded-For, not what
        the client claimed before it), and do links agents get use the proxy's scheme and host?"""
        console = proxied_console(app)
        assert token_ip(console) == "203.0.113.7"
        html = enrollment_page(console)
        assert "https://depot.example.com" in html and "http://localhost" not in html


class TestSecureCookies:
    @pytest.fixture
    def config_overrides(self):
        return {"DEPOT_PUBLIC_URL": "https://depot.example.com"}

    def test_an_https_public_url_makes_the_cookies_secure(self, app, client):
        """With DEPOT_PUBLIC_URL on https://, does signing in set only Secure cookies?"""
        user = make_user("admin")
        response = client.post("/login", base_url="https://localhost",
                               headers={"Referer": "https://localhost/login"}, data={
            "email": user.email, "password": PASSWORD, "csrf_token": csrf_from(
                client.get("/login", base_url="https://localhost").get_data(as_text=True))})
        assert response.status_code == 303
        cookies = response.headers.getlist("Set-Cookie")
        assert cookies and all("Secure" in c for c in cookies)
        assert response.headers["Strict-Transport-Security"] == "max-age=31536000"


class TestSecureCookiesSetting:
    @pytest.fixture
    def config_overrides(self):
        return {"DEPOT_SECURE_COOKIES": "1"}

    def test_the_setting_marks_every_cookie_secure(self, app, client):
        """With DEPOT_SECURE_COOKIES=1 (and no public URL), are the session cookie (which holds
        the CSRF token too) and the remember cookie Secure, HttpOnly and SameSite=Lax, at
        sign-in and at sign-out?"""
        assert app.config["SESSION_COOKIE_SECURE"] and app.config["REMEMBER_COOKIE_SECURE"]
        assert app.config["REMEMBER_COOKIE_HTTPONLY"] and app.config["SESSION_COOKIE_HTTPONLY"]
        user = make_user("admin")
        https = {"base_url": "https://localhost", "headers": {"Referer": "https://localhost/"}}
        page = client.get("/login", **https)
        cookies = page.headers.getlist("Set-Cookie")
        signed_in = client.post("/login", data={
            "email": user.email, "password": PASSWORD,
            "csrf_token": csrf_from(page.get_data(as_text=True))}, **https)
        assert signed_in.status_code == 303
        cookies += signed_in.headers.getlist("Set-Cookie")
        token = csrf_from(client.get("/", **https).get_data(as_text=True))
        signed_out = client.post("/logout", data={"csrf_token": token}, **https)
        assert signed_out.status_code in (302, 303)
        cookies += signed_out.headers.getlist("Set-Cookie")
        assert cookies
        for cookie in cookies:
            attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
            assert {"secure", "httponly", "samesite"} <= attributes, cookie
            assert "SameSite=Lax" in cookie

    def test_every_answer_tells_browsers_to_use_https_only(self, app, client, api_as):
        """With DEPOT_SECURE_COOKIES=1, do pages, errors, API JSON, static files and the agent
        API carry Strict-Transport-Security for one year, with no preload or subdomains?"""
        api = api_as("admin")
        answers = [client.get("/login"), client.get("/no-such-page"), client.get("/"),
                   api.get("/api/v1/distribution-points"), client.get("/api/v1/jobs/1"),
                   client.get("/static/depot.js"), client.post("/agent/v1/heartbeat", json={})]
        assert [a.headers.get("Strict-Transport-Security") for a in answers] == \
            ["max-age=31536000"] * len(answers)
        answers[5].close()

    def test_off_wins_over_an_https_public_url(self, app, client):
        """Does DEPOT_SECURE_COOKIES=0 win over an https:// public URL, for the cookies and for
        Strict-Transport-Security (not sent)?"""
        app.config.update(DEPOT_SECURE_COOKIES="0", DEPOT_PUBLIC_URL="https://depot.example.com")
        init_app(app)
        assert not app.config["SESSION_COOKIE_SECURE"]
        assert not app.config["REMEMBER_COOKIE_SECURE"]
        assert "Strict-Transport-Security" not in client.get("/login").headers


@pytest.mark.parametrize("value, count", [(None, 0), ("", 0), ("0", 0), (" 2 ", 2), ("10", 10)])
def test_trusted_proxies_reads_a_count(value, count):
    assert trusted_proxies(value) == count


@pytest.mark.parametrize("value", ["-1", "yes", "1.5", "11", "2 proxies"])
def test_a_bad_trusted_proxies_setting_says_what_is_wanted(value):
    with pytest.raises(BadSetting, match=r"DEPOT_TRUSTED_PROXIES must be .* 0 to 10 .*got"):
        trusted_proxies(value)


@pytest.mark.parametrize("value, public_url, secure", [
    (None, None, False), (None, "http://depot:8080", False), (None, "HTTPS://depot", True),
    ("1", None, True), ("off", "https://depot", False), ("true", "http://depot", True)])
def test_secure_cookies_follow_the_setting_or_the_public_url(value, public_url, secure):
    assert secure_cookies(value, public_url) is secure


def test_the_console_refuses_to_start_with_a_bad_setting(database_url, redis_url, tmp_path):
    """Is a bad value a clear error when the app is built, not a surprise on the first request?"""
    config = type("Bad", (), {"INSTANCE_DIR": str(tmp_path), "SQLALCHEMY_DATABASE_URI": database_url,
                              "REDIS_URL": redis_url, "DEPOT_SECURE_COOKIES": "maybe"})
    with pytest.raises(BadSetting, match="DEPOT_SECURE_COOKIES must be 1 or 0"):
        create_app(config)
