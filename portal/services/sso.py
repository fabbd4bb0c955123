"""Single sign-on through an OpenID Connect provider (Entra ID, Okta, Google ...): the settings,
the Depot role and sites a person's groups give, and the user they sign in as.

The provider vouches for a verified email: the Depot user with that email signs in (created on
first sign-in), and takes the role and sites their groups (or app roles) map to on every sign-in.
A person none of whose groups is mapped is refused. Every sign-in and refusal is audited. Local
accounts keep their passwords (break-glass); a user made here gets a random password nobody knows
(an admin may set one).
"""
import json
import secrets
from dataclasses import dataclass, field

from sqlalchemy import select
from werkzeug.security import generate_password_hash

from portal.core.errors import DepotError
from portal.core.names import clean_name
from portal.extensions import db
from portal.models import User
from portal.models.accounts import ROLES
from portal.services import accounts, audit
from portal.services.actors import Actor

RANK = {role: rank for rank, role in enumerate(reversed(ROLES))}  # viewer 0 < technician < admin
MAX_AUDITED_GROUPS = 50


class SsoNotConfigured(DepotError):
    code, status = "sso_not_configured", 503


class SsoRefused(DepotError):
    """Sign-in refused: `message` is for the person, `reason` for the audit log."""

    code, status = "sso_refused", 403

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Settings:
    issuer: str
    client_id: str
    client_secret: str
    name: str
    scope: str
    groups_claim: str
    verified_claim: str
    role_map: dict = field(default_factory=dict)
    site_map: dict = field(default_factory=dict)


def _json_setting(config, name: str) -> dict:
    value = config.get(name) or {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise SsoNotConfigured(f"{name} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise SsoNotConfigured(f"{name} must be a JSON object of group names")
    return value


def _role_map(config) -> dict[str, str]:
    roles = _json_setting(config, "DEPOT_OIDC_ROLE_MAP")
    wrong = sorted(g for g, role in roles.items() if role not in ROLES)
    if wrong:
        raise SsoNotConfigured(f"DEPOT_OIDC_ROLE_MAP: the role of {', '.join(wrong)} must be one "
                               f"of {', '.join(ROLES)}")
    if not roles:
        raise SsoNotConfigured("DEPOT_OIDC_ROLE_MAP is empty: nobody could sign in")
    return roles


def _site_map(config) -> dict[str, list[str]]:
    sites = {}
    for group, names in _json_setting(config, "DEPOT_OIDC_SITE_MAP").items():
        names = [names] if isinstance(names, str) else names
        if not isinstance(names, list):
            raise SsoNotConfigured(f"DEPOT_OIDC_SITE_MAP: {group} must map to a list of sites")
        try:
            sites[group] = [clean_name(n, "site name") for n in names]
        except ValueError as exc:
            raise SsoNotConfigured(f"DEPOT_OIDC_SITE_MAP: {group}: {exc}") from None
    return sites


def enabled(config) -> bool:
    """Whether single sign-on is set up (the issuer and the client id are given)."""
    return bool(config.get("DEPOT_OIDC_ISSUER") and config.get("DEPOT_OIDC_CLIENT_ID"))


def settings(config) -> Settings:
    """The single sign-on settings, or SsoNotConfigured saying what is missing or wrong."""
    if not enabled(config):
        raise SsoNotConfigured("single sign-on is not set up (DEPOT_OIDC_ISSUER, "
                               "DEPOT_OIDC_CLIENT_ID)")
    return Settings(
        issuer=config["DEPOT_OIDC_ISSUER"], client_id=config["DEPOT_OIDC_CLIENT_ID"],
        client_secret=config.get("DEPOT_OIDC_CLIENT_SECRET") or "",
        name=config.get("DEPOT_OIDC_NAME") or "single sign-on",
        scope=config.get("DEPOT_OIDC_SCOPE") or "openid email profile",
        groups_claim=config.get("DEPOT_OIDC_GROUPS_CLAIM") or "groups",
        verified_claim=config.get("DEPOT_OIDC_EMAIL_VERIFIED_CLAIM") or "email_verified",
        role_map=_role_map(config), site_map=_site_map(config),
    )


def groups_of(claims: dict, settings: Settings) -> list[str]:
    """The person's groups (or app roles) as the provider listed them."""
    value = claims.get(settings.groups_claim)
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        return []
    return [g for g in value if isinstance(g, str)]


def access_for(groups: list[str], settings: Settings) -> tuple[str | None, list[str]]:
    """(the highest role any group maps to or None, the sites of every mapped group: none means
    every site, as for local users)."""
    roles = [settings.role_map[g] for g in groups if g in settings.role_map]
    role = max(roles, key=RANK.__getitem__) if roles else None
    sites = sorted({s for g in groups for s in settings.site_map.get(g, [])})
    return role, sites


def refuse(settings: Settings, message: str, reason: str, ip: str | None, target=None,
           **details) -> SsoRefused:
    """Audit a refused single sign-on and return the error to raise."""
    anonymous = Actor(None, via="sso", ip=ip, name="anonymous")
    audit.record(anonymous, "auth.sso_refused", target=target, reason=reason,
                 issuer=settings.issuer, **details)
    db.session.commit()
    return SsoRefused(message, reason)


def _email_of(claims: dict, settings: Settings, ip: str | None) -> str:
    email = claims.get("email")
    subject = str(claims.get("sub") or "")[:200] or None
    if not isinstance(email, str) or "@" not in email or len(email.strip()) > 254:
        raise refuse(settings, f"{settings.name} did not give Depot your email address.",
                     "no email", ip, target=subject)
    email = email.strip().lower()
    if claims.get(settings.verified_claim) is not True:
        raise refuse(settings, f"{settings.name} has not verified your email address, so Depot "
                     "cannot tell which account is yours.", "email not verified", ip,
                     target=email, claim=settings.verified_claim)
    return email


def _last_admin_demoted(user: User, role: str) -> bool:
    if user.role != "admin" or role == "admin" or not user.active:
        return False
    return not accounts.admins_left(user)


def sign_in(claims: dict, settings: Settings, ip: str | None = None) -> User:
    """The user the provider's (already validated) id_token claims sign in as, created or brought
    up to date with the role and sites their groups map to; SsoRefused (audited) if none."""
    email = _email_of(claims, settings, ip)
    groups = groups_of(claims, settings)
    role, sites = access_for(groups, settings)
    seen = groups[:MAX_AUDITED_GROUPS]
    if role is None:
        raise refuse(settings, f"None of your groups at {settings.name} is allowed into Depot. "
                     "Ask an administrator to add you to a Depot group.", "no mapped group", ip,
                     target=email, groups=seen)
    user = db.session.scalars(select(User).where(User.email == email)).first()
    if user is not None and not user.active:
        raise refuse(settings, "Your Depot account is disabled.", "disabled", ip, target=email)
    if user is not None and _last_admin_demoted(user, role):
        raise refuse(settings, "Your groups would make you a " + role + ", but you are the last "
                     "active Depot admin: sign in with your password, or make someone else admin "
                     "first.", "last admin", ip, target=email, role=role, groups=seen)
    actor_of = lambda u: Actor(u, via="sso", ip=ip)  # noqa: E731
    created, changed = user is None, []
    if created:
        user = User(email=email, role=role, sites=sites,
                    password_hash=generate_password_hash(secrets.token_urlsafe(32)))
        db.session.add(user)
        db.session.flush()
        audit.record(actor_of(user), "user.create", target=email, role=role, sites=sites)
    else:
        changed = [k for k, v in (("role", role), ("sites", sites)) if getattr(user, k) != v]
        if "role" in changed:
            user.end_sessions()  # as an admin's change of role does: other sessions end
        user.role, user.sites = role, sites
        if changed:
            audit.record(actor_of(user), "user.update", target=email, fields=changed,
                         role=role, sites=sites, sessions_ended="role" in changed)
    audit.record(actor_of(user), "auth.sso_login", target=email, issuer=settings.issuer,
                 role=role, sites=sites, groups=seen, created=created)
    db.session.commit()
    return user
