"""Opening a DP's storage backend: the one place that hands a backend what it needs, as values.

A backend (portal.storage) never reaches up for what it needs: this module gives it its DP's
credentials decrypted, the server's settings, the key and address of the links central serves,
and for an OAuth DP the `DpTokens` store its renewed tokens go to. Every backend is used as a
context manager, so its connections close when the work is done:

    with open_storage(dp) as backend:
        backend.check()
"""
import json
import time
from contextlib import contextmanager

from flask import current_app
from sqlalchemy import select, update
from sqlalchemy.exc import OperationalError

from portal.core.errors import StorageUnavailable
from portal.extensions import db, get_redis
from portal.models import DistributionPoint
from portal.services import secrets
from portal.storage import OAUTH_PROVIDERS, StorageBackend, StorageEnv, backend_class, storage_for
from portal.storage.oauth import LOCK_SECONDS, token_record


def storage_env(public_url: str | None = None) -> StorageEnv:
    """What backends need of this server: its settings, the key of central's own links, and the
    address endpoints reach it at (DEPOT_PUBLIC_URL, else `public_url`: the request's host)."""
    config = current_app.config
    return StorageEnv(settings=config, link_secret=config["SECRET_KEY"],
                      public_url=config.get("DEPOT_PUBLIC_URL") or public_url)


def open_storage(dp: DistributionPoint, *, public_url: str | None = None) -> StorageBackend:
    """The backend of a saved DP, with its credentials decrypted (use it with `with`)."""
    secret = secrets.dp_secret(dp) if dp.secret else None
    tokens = DpTokens(dp.id, dp.name) if dp.provider in OAUTH_PROVIDERS else None
    return storage_for(dp, secret=secret, env=storage_env(public_url), tokens=tokens)


def probe_storage(kind: str, provider: str | None, **values) -> StorageBackend:
    """A backend for settings not saved yet (a connection test, a consent's first calls)."""
    return backend_class(kind, provider)(env=storage_env(), **values)


def token_lock(dp_id: int, redis=None):
    """The Redis lock under which a DP's OAuth tokens are renewed or replaced (Reconnect)."""
    return (redis or get_redis()).lock(f"depot:oauth-refresh:{dp_id}", timeout=LOCK_SECONDS,
                                       blocking_timeout=LOCK_SECONDS + 30)


class DpTokens:
    """An OAuth DP's tokens, encrypted in its row; renewed one at a time under a Redis lock.

    Upload threads renew tokens too, outside any app context: the store keeps the app and writes
    through the engine with a connection of its own."""

    def __init__(self, dp_id: int, name: str):
        self.dp_id, self.name = dp_id, name
        self._app = current_app._get_current_object()
        self._engine = db.engine
        self._redis = get_redis()

    @contextmanager
    def lock(self):
        lock = token_lock(self.dp_id, self._redis)
        if not lock.acquire():
            raise StorageUnavailable(f"another worker is renewing {self.name}'s access and did "
                                     "not finish")
        try:
            yield
        finally:
            try:
                lock.release()
            except Exception:  # noqa: BLE001 - the lock expired; the token is stored anyway
                pass

    def load(self) -> tuple[dict | None, str | None]:
        """The token stored for the DP now, and its ciphertext as stored (the version)."""
        with self._app.app_context(), self._engine.connect() as conn:
            stored = conn.scalar(select(DistributionPoint.secret).where(
                DistributionPoint.id == self.dp_id))
            if not stored:
                return None, stored
            plain = secrets.decrypt(stored, f"the sign-in of {self.name}",
                                    f"reconnect {self.name} (Distribution points, Reconnect)")
            return token_record(json.loads(plain)), stored

    def save(self, token: dict, version: str | None) -> bool:
        """Store the renewed token unless the stored one changed since it was read (a Reconnect);
        a busy database is waited for: a rotated refresh token must not be lost."""
        for attempt in range(1, 6):
            try:
                with self._app.app_context(), self._engine.begin() as conn:
                    done = conn.execute(
                        update(DistributionPoint)
                        .where(DistributionPoint.id == self.dp_id,
                               DistributionPoint.secret == version)
                        .values(secret=secrets.encrypt(json.dumps(token))))
                    return done.rowcount == 1
            except OperationalError:
                if attempt == 5:
                    raise StorageUnavailable(f"the renewed access of {self.name} could not be "
                                             "stored: the database is busy") from None
                time.sleep(attempt)
        return False
