"""People: users, passwords, sign-in with slow-down, and API tokens."""
import functools
import hashlib
import re
import secrets
import time

from flask import current_app
from sqlalchemy import func, select
from werkzeug.security import check_password_hash, generate_password_hash

from portal.core.errors import Conflict, DepotError, NotFound
from portal.core.names import clean_name
from portal.core.numbers import is_id
from portal.extensions import db, get_redis
from portal.models import ApiToken, User, utcnow
from portal.models.accounts import ROLES
from portal.services import audit
from portal.services.actors import Actor
from portal.services.permissions import require

EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MIN_PASSWORD = 8
GENERIC_LOGIN_ERROR = "Invalid email or password."


@functools.cache
def _dummy_hash() -> str:
    """A hash to check unknown emails against, so they take as long as known ones. Made on first
    use: hashing costs about 0.1 s, which every process (workers, nodes) would pay at import."""
    return generate_password_hash("not-a-real-password")


class InvalidCredentials(DepotError):
    code, status = "invalid_credentials", 401


class TooManyAttempts(DepotError):
    code, status = "too_many_attempts", 429

    def __init__(self, retry_after: int):
        super().__init__(f"Too many failed sign-ins. Try again in {retry_after} seconds.")
        self.retry_after = retry_after


def _clean_email(value) -> str:
    if not isinstance(value, str):
        raise DepotError("email must be a string")
    value = value.strip().lower()
    if len(value) > 254 or not EMAIL_RE.match(value):
        raise DepotError("email must look like name@example.com")
    return value


def _clean_password(value) -> str:
    if not isinstance(value, str):
        raise DepotError("password must be a string")
    if len(value) < MIN_PASSWORD:
        raise DepotError(f"password must be at least {MIN_PASSWORD} characters")
    if len(value) > 1024:
        raise DepotError("password must be at most 1024 characters")
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

def _failure_key(email: str) -> str:
    return "depot:login-failures:" + hashlib.sha256(email.encode()).hexdigest()


def login_delay(email: str) -> int:
    """Seconds this email must wait before the next attempt (0 when it may try now)."""
    data = get_redis().hgetall(_failure_key(email))
    failures = int(data.get(b"n", 0))
    free = current_app.config["DEPOT_LOGIN_FREE_FAILURES"]
    if failures < free:
        return 0
    delay = min(2 ** (failures - free), current_app.config["DEPOT_LOGIN_MAX_DELAY"])
    return max(0, int(float(data.get(b"at", 0)) + delay - time.time() + 0.999))


def _record_failure(email: str) -> None:
    key = _failure_key(email)
    pipe = get_redis().pipeline()
    pipe.hincrby(key, "n", 1)
    pipe.hset(key, "at", time.time())
    pipe.expire(key, 3600)
    pipe.execute()


def authenticate(email, password) -> User:
    """The user with this email and password; the same error whichever part was wrong.

    Repeated failures for one email are slowed down: after a few free tries each further
    attempt must wait twice as long as the last (up to a minute), right password or not.
    """
    if not isinstance(email, str) or not isinstance(password, str):
        raise InvalidCredentials(GENERIC_LOGIN_ERROR)
    email = email.strip().lower()
    if wait := login_delay(email):
        raise TooManyAttempts(wait)
    user = db.session.scalars(select(User).where(User.email == email)).first()
    ok = check_password_hash(user.password_hash if user else _dummy_hash(), password)
    if not (user and ok and user.active):
        _record_failure(email)
        raise InvalidCredentials(GENERIC_LOGIN_ERROR)
    get_redis().delete(_failure_key(email))
    return user


# --- users ---------------------------------------------------------------------------------

def get_user(user_id) -> User:
    user = db.session.get(User, user_id) if is_id(user_id) else None
    if user is None:
        raise NotFound(f"no user {user_id}")
    return user


def list_users() -> list[User]:
    return list(db.session.scalars(select(User).order_by(User.email)))


def create_user(actor: Actor, email, password, role, sites=None) -> User:
    """Add a person; admins only."""
    if actor.user is not None:
        require(actor.user, "manage_users")
    email, password, role = _clean_email(email), _clean_password(password), _clean_role(role)
    sites = _clean_sites(sites)
    if db.session.scalars(select(User).where(User.email == email)).first():
        raise Conflict(f"a user with email {email} already exists")
    user = User(email=email, password_hash=generate_password_hash(password), role=role, sites=sites)
    db.session.add(user)
    db.session.flush()
    audit.record(actor, "user.create", target=email, role=role, sites=sites)
    db.session.commit()
    return user


def _admins_left(excluding: User) -> int:
    return db.session.scalar(select(func.count()).where(
        User.role == "admin", User.active.is_(True), User.id != excluding.id))


def update_user(actor: Actor, user: User, changes: dict) -> User:
    """Change a person's role, sites, password or active flag; the last admin stays an admin."""
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
        values["sites"] = _clean_sites(changes["sites"])
    if "active" in changes:
        if not isinstance(changes["active"], bool):
            raise DepotError("active must be true or false")
        values["active"] = changes["active"]
    if "password" in changes:
        values["password_hash"] = generate_password_hash(_clean_password(changes["password"]))
    demoted = values.get("role", user.role) != "admin" or values.get("active", user.active) is False
    if user.role == "admin" and demoted and not _admins_left(user):
        raise Conflict("this is the last active admin; make someone else admin first")
    for key, value in values.items():
        setattr(user, key, value)
    audit.record(actor, "user.update", target=user.email,
                 fields=sorted(k if k != "password_hash" else "password" for k in values))
    db.session.commit()
    return user


def delete_user(actor: Actor, user: User) -> None:
    """Remove a person and their tokens; never the last admin."""
    require(actor.user, "manage_users")
    if user.role == "admin" and not _admins_left(user):
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
        password = generated = secrets.token_urlsafe(12)
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
