"""Enrollment tokens: what an admin hands to endpoints so their agents can enroll."""
import hashlib
import io
import json
import secrets as token_secrets
import zipfile
from datetime import timedelta
from pathlib import Path

from flask import current_app
from sqlalchemy import select

from portal.core.errors import DepotError, NotFound
from portal.core.names import clean_name
from portal.core.numbers import is_id, whole_number
from portal.extensions import db
from portal.models import DeviceGroup, EnrollmentToken, utcnow
from portal.services import audit
from portal.services import secrets as vault
from portal.services.actors import Actor
from portal.services.computers import MAX_ID
from portal.services.permissions import require

MAX_DAYS = 365


class EnrollTokenInvalid(DepotError):
    code, status = "enroll_token_invalid", 401


def _may_manage(actor: Actor) -> None:
    if actor.user is not None:  # None: the CLI or the system
        require(actor.user, "manage_settings")


def hash_token(secret: str) -> str:
    """How enrollment and device tokens are looked up: the SHA-256 of the token, never the token."""
    return hashlib.sha256(secret.encode()).hexdigest()


def create_enrollment_token(actor: Actor, name, days=7, group_id: int | None = None
                            ) -> tuple[EnrollmentToken, str]:
    """A new enrollment token valid for `days` (1 to 365): (row, the token). Devices that enroll
    with it land in group `group_id` when one is given."""
    _may_manage(actor)
    try:
        name = clean_name(name, "token name")
    except ValueError as exc:
        raise DepotError(str(exc)) from None
    days = whole_number(days, "days", minimum=1, maximum=MAX_DAYS, from_text=True, message=(
        f"the validity must be a whole number of days, between 1 and {MAX_DAYS} days"))
    if group_id is not None:
        if isinstance(group_id, bool) or not isinstance(group_id, int) or \
                not 1 <= group_id <= MAX_ID:
            raise DepotError("group_id must be a group's id (a whole number)")
        if db.session.get(DeviceGroup, group_id) is None:
            raise DepotError(f"no group {group_id}", code="unknown_group")
    secret = "det_" + token_secrets.token_urlsafe(32)
    token = EnrollmentToken(
        name=name, token_hash=hash_token(secret), prefix=secret[:10],
        secret=vault.encrypt(secret), group_id=group_id, created_by_id=actor.user_id,
        expires_at=utcnow() + timedelta(days=days),
    )
    db.session.add(token)
    audit.record(actor, "enrollment_token.create", target=name, days=days, group_id=group_id)
    db.session.commit()
    return token, secret


def list_enrollment_tokens() -> list[EnrollmentToken]:
    """Every enrollment token, newest first."""
    return list(db.session.scalars(select(EnrollmentToken).order_by(EnrollmentToken.id.desc())))


def get_enrollment_token(token_id: int) -> EnrollmentToken:
    """One enrollment token, or NotFound."""
    token = db.session.get(EnrollmentToken, token_id) if is_id(token_id) else None
    if token is None:
        raise NotFound(f"no enrollment token {token_id}")
    return token


def token_secret(token: EnrollmentToken) -> str:
    """The token itself, for the client installer of a token still valid."""
    if token.state != "valid":
        raise DepotError(f"the enrollment token {token.name} is {token.state}; create a new one",
                         code="enroll_token_invalid", status=409)
    return vault.decrypt(token.secret, f"the enrollment token {token.name}",
                         "revoke it and create a new enrollment token (installers made with it "
                         "keep working until it expires)")


def revoke_enrollment_token(actor: Actor, token_id: int) -> EnrollmentToken:
    """Revoke a token: no further device can enroll with it (enrolled devices keep working)."""
    _may_manage(actor)
    token = get_enrollment_token(token_id)
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        audit.record(actor, "enrollment_token.revoke", target=token.name)
        db.session.commit()
    return token


def find_valid_token(secret) -> EnrollmentToken:
    """The unexpired, unrevoked token with this secret, or EnrollTokenInvalid saying which."""
    if not isinstance(secret, str) or not secret.strip():
        raise EnrollTokenInvalid("send the enrollment token the admin gave you (enroll_token)")
    token = db.session.scalars(
        select(EnrollmentToken).where(EnrollmentToken.token_hash == hash_token(secret.strip()))
    ).first()
    if token is None:
        raise EnrollTokenInvalid("the enrollment token is unknown; ask an admin for a new one")
    if token.state != "valid":
        raise EnrollTokenInvalid(f"the enrollment token has {'been revoked' if token.revoked_at else 'expired'}; "
                                 "ask an admin for a new one")
    return token


# --- the client installer --------------------------------------------------------------------

AGENT_DIR = Path(__file__).resolve().parent.parent / "agent"
AGENT_COMMAND = "python3 depot-agent.pyz --config depot-agent.json --target {target}"
# Windows: the Python launcher `py` (python.org's installer puts it on PATH; `python3` there is
# often the Microsoft Store stub).
AGENT_COMMAND_WINDOWS = "py depot-agent.pyz --config depot-agent.json --target {target}"
PYZ_MAIN = "from depot_agent import main\n\nmain()\n"


def server_url(request_host_url: str) -> str:
    """The address agents reach this server at: DEPOT_PUBLIC_URL, else the request's host URL."""
    return (current_app.config.get("DEPOT_PUBLIC_URL") or request_host_url).rstrip("/")


def module_command(server: str, secret: str, target: str = "<folder>") -> str:
    """The agent started from a checkout of Depot (SPEC section 5) instead of the installer."""
    return f"python -m portal.agent --server {server} --enroll-token {secret} --target {target}"


def agent_command(target: str = "<folder>") -> str:
    """The one command that starts the agent from the unzipped installer."""
    return AGENT_COMMAND.format(target=target)


def agent_command_windows(target: str = "C:\\Deploy") -> str:
    """The same command on a Windows endpoint (Command Prompt or PowerShell)."""
    return AGENT_COMMAND_WINDOWS.format(target=target)


def build_agent_pyz() -> bytes:
    """The reference agent (portal/agent/, stdlib only) as a zipapp: `python3 depot-agent.pyz`."""
    if not (AGENT_DIR / "__init__.py").is_file():
        raise DepotError("the agent package (portal/agent/) is missing from this installation",
                         code="agent_missing", status=503)
    buffer = io.BytesIO()
    buffer.write(b"#!/usr/bin/env python3\n")
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as pyz:
        for path in sorted(AGENT_DIR.rglob("*.py")):
            if "__pycache__" not in path.parts:
                pyz.write(path, "depot_agent/" + path.relative_to(AGENT_DIR).as_posix())
        pyz.writestr("__main__.py", PYZ_MAIN)
    return buffer.getvalue()


def build_installer(actor: Actor, token_id: int, server: str) -> tuple[EnrollmentToken, bytes]:
    """The client installer of a valid token: a zip with depot-agent.json ({server,
    enroll_token}), depot-agent.pyz and README.txt with the command; (token, zip bytes)."""
    _may_manage(actor)
    token = get_enrollment_token(token_id)
    secret = token_secret(token)
    server = server.rstrip("/")
    config = json.dumps({"server": server, "enroll_token": secret}, indent=2) + "\n"
    readme = README.format(name=token.name, server=server, command=agent_command(),
                           windows_command=agent_command_windows(),
                           expires=token.expires_at.strftime("%Y-%m-%d %H:%M UTC"),
                           group=token.group.name if token.group else "no group")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("depot-agent.json", config)
        archive.writestr("depot-agent.pyz", build_agent_pyz())
        # CRLF: the README is opened on Windows endpoints as often as anywhere
        archive.writestr("README.txt", readme.replace("\n", "\r\n"))
    audit.record(actor, "enrollment_token.installer", target=token.name)
    db.session.commit()
    return token, buffer.getvalue()


README = """Depot agent installer ({name})
=====================

1. Copy this folder to the endpoint (Python 3 must be installed; nothing else is needed).
2. Run, in this folder:

   {command}

   where <folder> is where deployments are staged (and applied), e.g. /var/lib/depot.
   On Windows (Python 3 from python.org, which installs the `py` launcher), in this folder:

   {windows_command}

   To run the agent as a Windows service (WinSW) under LocalService, with its device
   token protected by DPAPI, see docs/windows-agent.md in Depot's repository.

The agent enrolls once with {server} using the enrollment token in depot-agent.json,
keeps its own device token in the target folder, and then waits for deployments.
The enrollment token expires {expires}; devices that enroll with it join {group}.
Keep depot-agent.json private: anyone holding it can enroll a device until it expires
or an admin revokes it (Settings > Enrollment).
"""
