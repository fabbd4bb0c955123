"""Behind a reverse proxy (nginx, a load balancer terminating HTTPS): which forwarded headers to
believe, and cookies that only travel over HTTPS.

`DEPOT_TRUSTED_PROXIES` is how many proxies stand in front of the console, each adding itself to
X-Forwarded-For/-Proto/-Host/-Port/-Prefix. With it set, Werkzeug's ProxyFix takes the client's
address (sign-in throttling, the audit log), the scheme and the host (OAuth redirect URIs, links
agents get) from those headers; without it (the default) they are ignored, since anyone could
send them. Secure cookies follow `DEPOT_SECURE_COOKIES`, which defaults to on when
`DEPOT_PUBLIC_URL` is an https:// address.
"""
from werkzeug.middleware.proxy_fix import ProxyFix

MAX_PROXIES = 10


class BadSetting(ValueError):
    """A setting the console cannot start with; the message says which and why."""


def trusted_proxies(value) -> int:
    """DEPOT_TRUSTED_PROXIES as a count, or BadSetting with what is wrong."""
    text = str(value if value is not None else "").strip()
    if text == "":
        return 0
    if not text.isdigit() or int(text) > MAX_PROXIES:
        raise BadSetting(f"DEPOT_TRUSTED_PROXIES must be the number of reverse proxies in front of "
                         f"the console, 0 to {MAX_PROXIES} (0: trust no X-Forwarded-* header); "
                         f"got {text!r}")
    return int(text)


def secure_cookies(value, public_url) -> bool:
    """DEPOT_SECURE_COOKIES as a flag: unset, on exactly when the public URL is https://."""
    text = str(value if value is not None else "").strip().lower()
    if text == "":
        return str(public_url or "").lower().startswith("https://")
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise BadSetting(f"DEPOT_SECURE_COOKIES must be 1 or 0 (unset: on when DEPOT_PUBLIC_URL is "
                     f"https://); got {text!r}")


def init_app(app) -> None:
    """Wrap the app in ProxyFix for the configured proxies and set the cookies' Secure flag."""
    count = trusted_proxies(app.config.get("DEPOT_TRUSTED_PROXIES"))
    if count:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=count, x_proto=count, x_host=count,
                                x_port=count, x_prefix=count)
    secure = secure_cookies(app.config.get("DEPOT_SECURE_COOKIES"),
                            app.config.get("DEPOT_PUBLIC_URL"))
    app.config["SESSION_COOKIE_SECURE"] = secure
    app.config["REMEMBER_COOKIE_SECURE"] = secure
