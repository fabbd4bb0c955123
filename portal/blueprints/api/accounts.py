"""Tokens and users."""
from flask import g

from portal.blueprints.api import bp
from portal.services import accounts
from portal.services.actors import Actor
from portal.services.permissions import require
from portal.web.auth import api_actor, client_ip
from portal.web.views import json_body


@bp.post("/tokens")
def create_token():
    """Exchange email and password (and `code`, for an account with two-step sign-in) for a
    personal API token (201 {token})."""
    body = json_body()
    user = accounts.authenticate(body.get("email"), body.get("password"), ip=client_ip(),
                                 via="api", code=body.get("code"))
    token, secret = accounts.create_token(Actor(user, via="api", ip=client_ip()), user,
                                          body.get("name", "API token"))
    return {"token": secret, "id": token.id, "name": token.name}, 201


@bp.get("/users")
def list_users():
    """Every user (admins only)."""
    require(g.api_user, "manage_users")
    return {"items": [u.to_dict() for u in accounts.list_users()]}


@bp.post("/users")
def create_user():
    """Add a user {email, password, role, sites} (admins only)."""
    require(g.api_user, "manage_users")
    body = json_body()
    user = accounts.create_user(api_actor(), body.get("email"), body.get("password"),
                                body.get("role"), body.get("sites"))
    return user.to_dict(), 201


@bp.get("/users/<int:user_id>")
def get_user(user_id: int):
    """One user (admins only)."""
    require(g.api_user, "manage_users")
    return accounts.get_user(user_id).to_dict()


@bp.patch("/users/<int:user_id>")
def update_user(user_id: int):
    """Change role, sites, password, email or active (admins only)."""
    require(g.api_user, "manage_users")
    body = json_body()
    return accounts.update_user(api_actor(), accounts.get_user(user_id), body).to_dict()


@bp.delete("/users/<int:user_id>")
def delete_user(user_id: int):
    """Remove a user (admins only)."""
    require(g.api_user, "manage_users")
    accounts.delete_user(api_actor(), accounts.get_user(user_id))
    return "", 204
