"""Test data built through the services, so it is what the product itself would make."""
import itertools
import os

from portal.services import accounts
from portal.services.actors import Actor

PASSWORD = "correct horse battery"
_seq = itertools.count(1)


def make_user(role="admin", email=None, sites=None, password=PASSWORD):
    email = email or f"{role}{next(_seq)}@example.com"
    return accounts.create_user(Actor(None, via="cli"), email, password, role, sites or [])


def make_token(user, name="tests"):
    _, secret = accounts.create_token(Actor(user, via="cli"), user, name)
    return secret


def write_file(root, rel, data=b"x", mtime_ns=None):
    """Write a file under a content root (creating folders); returns its path."""
    path = os.path.join(os.fsencode(root), os.fsencode(rel)) if isinstance(rel, bytes) \
        else os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(data)
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))
    return path
