"""Two-step sign-in for local accounts: a TOTP authenticator app (RFC 6238: 6 digits, 30-second
steps) and ten one-time recovery codes.

- **Enrolling**: `begin` keeps a new key (encrypted with services/secrets.py, rotated with the
  others) and gives the otpauth:// address an app reads; `confirm` with the app's first code
  switches the second step on and gives the recovery codes, shown this once and kept as SHA-256.
- **Signing in**: after the right password, `sign_in` takes a code from the app or a recovery
  code. An app code is taken within one step either side of now (clocks drift), and each step
  once only (`totp_last_step`): a code seen over a shoulder or in a log cannot be used again. A
  recovery code is used once. Wrong codes count as failed sign-ins of that account from that
  address (services/sign_in_limits.py), and a right password alone does not clear them, so the
  password cannot be used to buy more guesses at the code.
- **Admins**: with DEPOT_REQUIRE_2FA_ADMINS=1 an admin without an authenticator is sent to set
  one up right after the password and can do nothing else until done (`must_enrol`, checked
  on every console request: blueprints/auth/two_factor.py). An admin resets someone else's
  second step (a lost phone); turning off one's own needs the password and a code.

Every step is audited (actions `auth.2fa_*`, `auth.login` with the factor used).
"""
import hashlib
import hmac
import secrets as random
import time

import pyotp
from flask import current_app
from sqlalchemy import delete, func, select, update
from werkzeug.security import check_password_hash

from portal.core.errors import Conflict, DepotError, PermissionDenied
from portal.extensions import db
from portal.models import RecoveryCode, User, utcnow
from portal.services import audit, secrets, sign_in_limits
from portal.services.actors import Actor
from portal.services.permissions import require

ISSUER = "Depot"
STEP = 30  # seconds
DIGITS = 6
DRIFT = 1  # steps either side of now
RECOVERY_CODES = 10
# 16 characters from 31 (79 bits; no i, l, o, 0 or 1 to misread): too many to guess, so a plain
# SHA-256 is enough to keep (as for API tokens).
RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
RECOVERY_LENGTH = 16
MAX_CODE = 64  # characters of a code we even look at


class InvalidCode(DepotError):
    code, status = "invalid_code", 401


class SecondFactorRequired(DepotError):
    """The password was right; the account also needs a code (the API's `code` field)."""

    code, status = "second_factor_required", 401


# --- state ---------------------------------------------------------------------------------

def enabled(user: User) -> bool:
    """Whether signing in as this person takes a code after the password."""
    return user.totp_enabled_at is not None


def required(user: User) -> bool:
    """Whether this person must use an authenticator (admins, when the setting says so)."""
    return bool(current_app.config.get("DEPOT_REQUIRE_2FA_ADMINS")) and user.role == "admin"


def must_enrol(user: User) -> bool:
    """An admin who must use an authenticator and has none yet: they may only set one up."""
    return required(user) and not enabled(user)


def recovery_codes_left(user: User) -> int:
    return db.session.scalar(select(func.count()).select_from(RecoveryCode).where(
        RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None)))


def _key(user: User) -> str:
    return secrets.decrypt(user.totp_secret, f"the authenticator key of {user.email}",
                           "have an admin reset their two-step sign-in (Settings, Users), "
                           "then set it up again")


def provisioning_uri(user: User, key: str) -> str:
    """The otpauth:// address an authenticator app reads (as a QR code or pasted)."""
    return pyotp.TOTP(key, digits=DIGITS, interval=STEP).provisioning_uri(
        name=user.email, issuer_name=ISSUER)


def pending(user: User) -> dict | None:
    """The enrolment begun and not yet confirmed: {key, uri}, else None."""
    if enabled(user) or not user.totp_secret:
        return None
    key = _key(user)
    return {"key": key, "grouped": " ".join(key[i:i + 4] for i in range(0, len(key), 4)),
            "uri": provisioning_uri(user, key)}


# --- codes ---------------------------------------------------------------------------------

def _digits(code) -> str | None:
    """A code as typed ("123 456", "123-456") as its six digits, else None."""
    if not isinstance(code, str) or len(code) > MAX_CODE:
        return None
    code = "".join(c for c in code if c not in " -")
    return code if len(code) == DIGITS and code.isascii() and code.isdigit() else None


def _matching_step(key: str, code: str, now: float | None = None) -> int | None:
    """The step (within DRIFT of now) whose code this is, else None."""
    totp = pyotp.TOTP(key, digits=DIGITS, interval=STEP)
    current = int((time.time() if now is None else now) // STEP)
    for step in range(current - DRIFT, current + DRIFT + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def _use_step(user: User, step: int) -> bool:
    """Take this step as used, if no later or equal one was: one UPDATE, so two requests racing
    with the same code cannot both win."""
    taken = db.session.execute(
        update(User).where(User.id == user.id)
        .where((User.totp_last_step.is_(None)) | (User.totp_last_step < step))
        .values(totp_last_step=step).execution_options(synchronize_session=False)).rowcount
    if taken:
        user.totp_last_step = step
    return bool(taken)


def _recovery_hash(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


def _normal_recovery(code) -> str | None:
    """A recovery code as typed (any case, dashes or spaces) in its stored form, else None."""
    if not isinstance(code, str) or len(code) > MAX_CODE:
        return None
    code = "".join(c for c in code.lower() if c not in " -")
    return code if len(code) == RECOVERY_LENGTH and all(c in RECOVERY_ALPHABET for c in code) \
        else None


def _use_recovery_code(user: User, code: str) -> bool:
    """Mark this unused recovery code of the user used (one UPDATE: used once, even racing)."""
    return bool(db.session.execute(
        update(RecoveryCode).where(RecoveryCode.user_id == user.id,
                                   RecoveryCode.code_hash == _recovery_hash(code),
                                   RecoveryCode.used_at.is_(None))
        .values(used_at=utcnow()).execution_options(synchronize_session=False)).rowcount)


def _check_code(user: User, code) -> str | None:
    """Which factor this code is of the enrolled user ("totp", "recovery code"), used up now;
    None if it is neither (or was used already)."""
    digits = _digits(code)
    if digits is not None:
        step = _matching_step(_key(user), digits)
        return "totp" if step is not None and _use_step(user, step) else None
    normal = _normal_recovery(code)
    if normal is not None and _use_recovery_code(user, normal):
        return "recovery code"
    return None


def _new_recovery_codes(user: User) -> list[str]:
    """Ten new recovery codes ("abcd-efgh-jkmn-pqrs"), replacing any the user had."""
    db.session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    codes = []
    for _ in range(RECOVERY_CODES):
        plain = "".join(random.choice(RECOVERY_ALPHABET) for _ in range(RECOVERY_LENGTH))
        db.session.add(RecoveryCode(user_id=user.id, code_hash=_recovery_hash(plain)))
        codes.append("-".join(plain[i:i + 4] for i in range(0, RECOVERY_LENGTH, 4)))
    return codes


def _guarded(actor: Actor, check, refused_action: str, message: str):
    """What `check` says (something true when what the person gave is right), run under the
    sign-in limits of their account from their address: a wrong answer counts as a failed
    sign-in, is audited and raises InvalidCode."""
    user = actor.user
    sign_in_limits.check(user.email, actor.ip)
    result = check()
    if result:
        return result
    db.session.rollback()  # nothing of a half-made change
    reached = sign_in_limits.record_failure(user.email, actor.ip)
    audit.record(actor, refused_action, target=user.email)
    for scope in reached:
        audit.record(actor, "auth.login_throttled", target=user.email, limit=scope)
    db.session.commit()
    raise InvalidCode(message)


# --- signing in ----------------------------------------------------------------------------

def sign_in(user: User, code, ip: str | None = None, via: str = "console") -> str:
    """The second step of signing in, after the right password: the factor used ("totp",
    "recovery code"), else TooManyAttempts or InvalidCode (counted as a failed sign-in)."""
    if not enabled(user):
        raise DepotError(f"{user.email} has no second step to sign in with")
    actor = Actor(user, via=via, ip=ip)
    if code is None or code == "":
        raise SecondFactorRequired("This account signs in with a code from its authenticator "
                                   "app (or a recovery code) too: send it as `code`.")
    factor = _guarded(actor, lambda: _check_code(user, code), "auth.2fa_failed",
                      "That code is not right, or was used already.")
    sign_in_limits.record_success(user.email, ip)
    details = {"second_factor": factor}
    if factor == "recovery code":
        details["recovery_codes_left"] = recovery_codes_left(user)
    audit.record(actor, "auth.login", target=user.email, **details)
    db.session.commit()
    return factor


# --- enrolling, turning off ----------------------------------------------------------------

def begin(actor: Actor) -> dict:
    """Start setting up an authenticator: a new key (replacing one begun before); {key, uri}."""
    user = actor.user
    if enabled(user):
        raise Conflict("Two-step sign-in is on already: turn it off first to move to a new "
                       "authenticator.")
    user.totp_secret = secrets.encrypt(pyotp.random_base32())  # 32 characters: 160 bits
    user.totp_last_step = None
    audit.record(actor, "auth.2fa_setup_begun", target=user.email)
    db.session.commit()
    return pending(user)


def confirm(actor: Actor, code) -> list[str]:
    """Switch two-step sign-in on with the app's current code: the ten recovery codes (shown
    once). The code confirming it cannot sign in again. Every console session of the person
    ends (one signed in with a stolen password must not outlast the new factor): the caller
    keeps its own by signing in again."""
    user = actor.user
    if enabled(user):
        raise Conflict("Two-step sign-in is on already.")
    if not user.totp_secret:
        raise DepotError("Start setting up an authenticator first.")
    digits = _digits(code)
    step = _matching_step(_key(user), digits) if digits else None
    if step is None:
        audit.record(actor, "auth.2fa_setup_refused", target=user.email)
        db.session.commit()
        raise InvalidCode("That code is not right: enter the 6 digits the app shows now (and "
                          "check that the phone's clock is right).")
    user.totp_last_step = step
    user.totp_enabled_at = utcnow()
    codes = _new_recovery_codes(user)
    user.end_sessions()
    audit.record(actor, "auth.2fa_enable", target=user.email, sessions_ended=True)
    db.session.commit()
    return codes


def regenerate_recovery_codes(actor: Actor, code) -> list[str]:
    """Ten new recovery codes for a current code (app or recovery); the old ones stop working."""
    user = actor.user
    if not enabled(user):
        raise Conflict("Two-step sign-in is off: there are no recovery codes.")
    _guarded(actor, lambda: _check_code(user, code) is not None, "auth.2fa_recovery_codes_refused",
             "That code is not right, or was used already.")
    codes = _new_recovery_codes(user)
    audit.record(actor, "auth.2fa_recovery_codes", target=user.email)
    db.session.commit()
    return codes


def _clear(user: User) -> None:
    user.totp_secret = None
    user.totp_enabled_at = None
    user.totp_last_step = None
    db.session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))


def disable(actor: Actor, password, code) -> None:
    """Turn one's own two-step sign-in off, given the password and a current code."""
    user = actor.user
    if not enabled(user):
        raise Conflict("Two-step sign-in is off already.")
    _guarded(actor, lambda: isinstance(password, str) and len(password) <= 1024
             and check_password_hash(user.password_hash, password)
             and _check_code(user, code) is not None,
             "auth.2fa_disable_refused", "The password or the code is not right.")
    _clear(user)
    audit.record(actor, "auth.2fa_disable", target=user.email, still_required=required(user))
    db.session.commit()


def reset(actor: Actor, user: User) -> None:
    """An admin turns off someone else's two-step sign-in (a lost phone): their key and
    recovery codes go, and their sessions end; they set it up again after the password."""
    require(actor.user, "manage_users")
    if actor.user_id == user.id:
        raise PermissionDenied("Turn off your own two-step sign-in under Settings, Security "
                               "(it asks for your password and a code).")
    if not user.totp_secret and not enabled(user):
        raise Conflict(f"{user.email} has no two-step sign-in to reset.")
    _clear(user)
    user.end_sessions()
    audit.record(actor, "auth.2fa_reset", target=user.email, sessions_ended=True)
    db.session.commit()
