"""People: users, passwords, sign-in with slow-down, and API tokens."""
import functools
import hashlib
import re
import secrets

from sqlalchemy import func, select
from werkzeug.security import check_password_hash, generate_password_hash
from zxcvbn import zxcvbn

from portal.core.errors import Conflict, DepotError, NotFound, PermissionDenied
from portal.core.names import clean_name
from portal.core.numbers import is_id
from portal.extensions import db
from portal.models import ApiToken, User, utcnow
from portal.models.accounts import ROLES
from portal.services import audit, sign_in_limits, sites as known, two_factor
from portal.services.actors import Actor
from portal.services.permissions import require
from portal.services.sign_in_limits import TooManyAttempts  # noqa: F401 (raised by authenticate)

EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MIN_PASSWORD = 12
MAX_PASSWORD = 1024
# zxcvbn's score: 0 too guessable ... 4 very unguessable; 3 is "safely unguessable" (about 10^10
# guesses), what it advises for a password guarded by throttling, like ours.
MIN_PASSWORD_SCORE = 3
ZXCVBN_MAX_LENGTH = 72  # zxcvbn refuses longer input (its cost grows with length)
GENERIC_LOGIN_ERROR = "Invalid email or password."


@functools.cache
def _dummy_hash() -> str:
    """A hash to check unknown emails against, so they take as long as known ones. Made on first
    use: hashing costs about 0.1 s, which every process (workers, nodes) would pay at import."""
    return generate_password_hash("not-a-real-password")


class InvalidCredentials(DepotError):
    code, status = "invalid_credentials", 401


class WeakPassword(DepotError):
    code = "weak_password"


def _clean_email(value) -> str:
    if not isinstance(value, str):
        raise DepotError("email must be a string")
    value = value.strip().lower()
    if len(value) > 254 or not EMAIL_RE.match(value):
        raise DepotError("email must look like name@example.com")
    return value


def _clean_password(value, email: str | None = None) -> str:
    """A new password, or WeakPassword saying why not: at least 12 characters, and not easy to
    guess as zxcvbn judges it (common passwords, words, keyboard runs, dates, the email)."""
    if not isinstance(value, str):
        raise DepotError("password must be a string")
    if len(value) < MIN_PASSWORD:
        raise WeakPassword(f"password must be at least {MIN_PASSWORD} characters")
    if len(value) > MAX_PASSWORD:
        raise DepotError(f"password must be at most {MAX_PASSWORD} characters")
    hints = [email, *email.split("@"), *re.split(r"[@._+-]", email)] if email else []
    result = zxcvbn(value[:ZXCVBN_MAX_LENGTH], user_inputs=[h for h in hints if h])
    if result["score"] < MIN_PASSWORD_SCORE:
        feedback = result["feedback"]
        why = feedback.get("warning") or "it is easy to guess"
        advice = " ".join(feedback.get("suggestions") or []) or \
            "Use a few uncommon words or a password manager's random password."
        raise WeakPassword(f"password is too easy to guess: {why.rstrip('.')}. {advice}")
    return value


def _clean_role(value) -> str:
    if value not in ROLES:
        raise DepotError(f"role must be one of: {', '.join(ROLES)}")
    return value


def _clean_sites(value) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise DepotError("sites must be a list of site names")
    try:
        return sorted({clean_name(s, "site name") for s in value})
    except ValueError as exc:
        raise DepotError(str(exc)) from None


# --- sign-in -------------------------------------------------------------------------------

def check_password(email, password, ip: str | None = None, via: str = "console") -> User:
    """The first step of signing in: the user with this email and password; the same error
    whichever part was wrong. For someone without two-step sign-in this is the whole sign-in;
    for someone with it, two_factor.sign_in must follow (the console asks for the code next).

    Failures are throttled per account from this address, per address and per account
    (services/sign_in_limits.py): a refused try raises TooManyAttempts before the password is
    checked. Failures, the limits they reach and sign-ins are audited. Passwords set before
    the policy (shorter or guessable) still sign in. A right password followed by a code does
    not clear the account's failures from this address until the code is right too.
    """
    if not isinstance(email, str) or not isinstance(password, str):
        raise InvalidCredentials(GENERIC_LOGIN_ERROR)
    email = email.strip().lower()[:254]
    anonymous = Actor(None, via=via, ip=ip, name="anonymous")
    sign_in_limits.check(email, ip)  # refused tries are not audited one by one (a flood)
    user = db.session.scalars(select(User).where(User.email == email)).first()
    ok = check_password_hash(user.password_hash if user else _dummy_hash(), password)
    if not (user and ok and user.active):
        reason = "unknown email" if user is None else "wrong password" if not ok else "disabled"
        reached = sign_in_limits.record_failure(email, ip)
        audit.record(anonymous, "auth.login_failed", target=email, reason=reason)
        for scope in reached:
            audit.record(anonymous, "auth.login_throttled", target=email, limit=scope)
        db.session.commit()
        raise InvalidCredentials(GENERIC_LOGIN_ERROR)
    if two_factor.enabled(user):
        audit.record(Actor(user, via=via, ip=ip), "auth.password_accepted", target=email,
                     next="second factor")
    else:
        sign_in_limits.record_success(email, ip)
        audit.record(Actor(user, via=via, ip=ip), "auth.login", target=email)
    db.session.commit()
    return user


def authenticate(email, password, ip: str | None = None, via: str = "console",
                 code=None) -> User:
    """The whole sign-in of a program (the API's token exchange): the password, then the code
    of someone with two-step sign-in (SecondFactorRequired without one). An admin who must set
    up an authenticator first (DEPOT_REQUIRE_2FA_ADMINS) is refused until they have."""
    user = check_password(email, password, ip=ip, via=via)
    if two_factor.enabled(user):
        two_factor.sign_in(user, code, ip=ip, via=via)
    elif two_factor.must_enrol(user):
        audit.record(Actor(user, via=via, ip=ip), "auth.login_refused", target=user.email,
                     reason="two-step sign-in not set up")
        db.session.commit()
        raise PermissionDenied("Admins must set up two-step sign-in first: sign in to the "
                               "console and follow Settings, Security.")
    return user


def sign_out(actor: Actor) -> None:
    """End every console session of the actor (this one included), audited."""
    actor.user.end_sessions()
    audit.record(actor, "auth.logout", target=actor.user.email)
    db.session.commit()


def end_other_sessions(actor: Actor) -> User:
    """"Sign out everywhere else": every console session of the actor ends, audited; the caller
    keeps this one by signing in again under the new session version. API tokens are kept."""
    actor.user.end_sessions()
    audit.record(actor, "auth.logout_others", target=actor.user.email)
    db.session.commit()
    return actor.user


def user_by_email(email) -> User:
    """The user with this email (any case, blanks around it), or NotFound."""
    found = None
    if isinstance(email, str) and len(email.strip()) <= 254:
        found = db.session.scalars(select(User).where(User.email == email.strip().lower())).first()
    if found is None:
        raise NotFound(f"there is no user with the email {str(email)[:254]!r}")
    return found


def reset_password(actor: Actor, user: User, password) -> User:
    """Break-glass (`flask users reset-password`, by whoever runs the server): a new password
    under the policy; every console session of the person ends and their sign-in throttling
    starts afresh (a lockout kept up from elsewhere included). Audited; API tokens are kept."""
    user.password_hash = generate_password_hash(_clean_password(password, user.email))
    user.end_sessions()
    audit.record(actor, "user.password_reset", target=user.email, sessions_ended=True,
                 sign_in_limits_cleared=True)
    db.session.commit()
    sign_in_limits.clear_account(user.email)
    return user


def change_own_password(actor: Actor, current, new) -> User:
    """A person's new password, given their current one: their other sessions end (the caller
    keeps this one by signing in again)."""
    user = actor.user
    if not isinstance(current, str) or not check_password_hash(user.password_hash, current):
        audit.record(actor, "user.password_change_refused", target=user.email)
        db.session.commit()
        raise InvalidCredentials("Your current password is not right.")
    password = _clean_password(new, user.email)
    if check_password_hash(user.password_hash, password):
        raise DepotError("the new password must differ from the current one")
    user.password_hash = generate_password_hash(password)
    user.end_sessions()
    audit.record(actor, "user.password_change", target=user.email, sessions_ended=True)
    db.session.commit()
    return user


# --- users ---------------------------------------------------------------------------------

def get_user(user_id) -> User:
    user = db.session.get(User, user_id) if is_id(user_id) else None
    if user is None:
        raise NotFound(f"no user {user_id}")
    return user


def list_users() -> list[User]:
    return list(db.session.scalars(users_query().order_by(User.email)))


def users_query():
    """Everyone who can sign in, unordered (Settings > Users sorts and pages it)."""
    return select(User)


def create_user(actor: Actor, email, password, role, sites=None) -> User:
    """Add a person; admins only. The sites an admin names must be sites Depot knows (a typo
    would scope a viewer to nothing); the CLI may name a site ahead of its DP."""
    if actor.user is not None:
        require(actor.user, "manage_users")
    email, role = _clean_email(email), _clean_role(role)
    password = _clean_password(password, email)
    sites = _clean_sites(sites)
    if actor.user is not None:
        known.refuse_unknown(sites)
    if db.session.scalars(select(User).where(User.email == email)).first():
        raise Conflict(f"a user with email {email} already exists")
    user = User(email=email, password_hash=generate_password_hash(password), role=role, sites=sites)
    db.session.add(user)
    db.session.flush()
    audit.record(actor, "user.create", target=email, role=role, sites=sites)
    db.session.commit()
    return user


def admins_left(excluding: User) -> int:
    """How many other active admins there are beside `excluding`."""
    return db.session.scalar(select(func.count()).where(
        User.role == "admin", User.active.is_(True), User.id != excluding.id))


def update_user(actor: Actor, user: User, changes: dict) -> User:
    """Change a person's role, sites, password, email or active flag; the last active admin stays
    an active admin. Only what differs is changed and audited (one entry naming each change); a
    new role, a new password or a deactivation ends the person's console sessions."""
    require(actor.user, "manage_users")
    allowed = {"role", "sites", "password", "active", "email"}
    unknown = set(changes) - allowed
    if unknown:
        raise DepotError(f"unknown field(s): {', '.join(sorted(unknown))}")
    values = {}
    if "email" in changes:
        values["email"] = _clean_email(changes["email"])
        other = db.session.scalars(select(User).where(User.email == values["email"])).first()
        if other is not None and other.id != user.id:
            raise Conflict(f"a user with email {values['email']} already exists")
    if "role" in changes:
        values["role"] = _clean_role(changes["role"])
    if "sites" in changes:
        values["sites"] = known.refuse_unknown(_clean_sites(changes["sites"]),
                                               keep=list(user.sites or []))
    if "active" in changes:
        if not isinstance(changes["active"], bool):
            raise DepotError("active must be true or false")
        values["active"] = changes["active"]
    values = {k: v for k, v in values.items() if v != getattr(user, k)}  # what really changes
    if "password" in changes:
        values["password_hash"] = generate_password_hash(
            _clean_password(changes["password"], values.get("email", user.email)))
    demoted = values.get("role", user.role) != "admin" or values.get("active", user.active) is False
    if user.role == "admin" and user.active and demoted and not admins_left(user):
        raise Conflict(f"{user.email} is the last active admin: make someone else an admin "
                       "first", code="last_admin")
    if not values:
        return user
    end_sessions = ("password_hash" in values or "role" in values
                    or (user.active and values.get("active") is False))
    details = {k: values[k] for k in ("role", "sites", "active") if k in values}
    if "role" in values:
        details["previous_role"] = user.role
    for key, value in values.items():
        setattr(user, key, value)
    if end_sessions:
        user.end_sessions()
    audit.record(actor, "user.update", target=user.email, sessions_ended=end_sessions,
                 fields=sorted(k if k != "password_hash" else "password" for k in values),
                 **details)
    db.session.commit()
    return user


def delete_user(actor: Actor, user: User) -> None:
    """Remove a person and their tokens; never the last admin."""
    require(actor.user, "manage_users")
    if user.role == "admin" and not admins_left(user):
        raise Conflict("this is the last active admin; it cannot be deleted")
    audit.record(actor, "user.delete", target=user.email)
    db.session.delete(user)
    db.session.commit()


def ensure_first_admin(email: str | None, password: str | None) -> tuple[User | None, str | None]:
    """Create the first admin when there are no users: (user, generated password or None)."""
    if db.session.scalar(select(func.count()).select_from(User)):
        return None, None
    generated = None
    if not password:
        password = generated = secrets.token_urlsafe(18)  # 24 random characters
    user = create_user(Actor(None, via="cli"), email or "admin@depot.local", password, "admin")
    return user, generated


# --- API tokens ----------------------------------------------------------------------------

def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(actor: Actor, user: User, name) -> tuple[ApiToken, str]:
    """A new personal API token for the user: (row, the token, shown this once)."""
    try:
        name = clean_name(name, "token name")
    except ValueError as exc:
        raise DepotError(str(exc)) from None
    secret = "dpt_" + secrets.token_urlsafe(32)
    token = ApiToken(user_id=user.id, name=name, token_hash=_hash_token(secret), prefix=secret[:10])
    db.session.add(token)
    audit.record(actor, "token.create", target=user.email, name=name)
    db.session.commit()
    return token, secret


def user_for_token(secret: str) -> User | None:
    """The active user owning this unrevoked token, noting its use."""
    token = db.session.scalars(select(ApiToken).where(ApiToken.token_hash == _hash_token(secret))).first()
    if token is None or token.revoked_at is not None or not token.user.active:
        return None
    now = utcnow()
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
        token.last_used_at = now
        db.session.commit()
    return token.user


def revoke_token(actor: Actor, token_id: int) -> ApiToken:
    """Revoke one of the actor's tokens (admins: anyone's)."""
    token = db.session.get(ApiToken, token_id)
    if token is None or (token.user_id != actor.user_id and actor.user.role != "admin"):
        raise NotFound(f"no token {token_id}")
    token.revoked_at = utcnow()
    audit.record(actor, "token.revoke", target=token.user.email, name=token.name)
    db.session.commit()
    return token
