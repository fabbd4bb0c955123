"""Depot's error family: every error meant for a person carries its message, an API code and the
HTTP status it answers with, and is raised the same way by services, storage and the DP node."""


class DepotError(Exception):
    """A domain error with a message meant for people; `code` is the API's error code; `detail`,
    the technical account behind it (what was asked of whom, what came back), which the console
    keeps behind a disclosure."""

    code = "invalid"
    status = 400

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None,
                 detail: str | None = None):
        super().__init__(message)
        self.message = message
        self.detail = detail
        if code:
            self.code = code
        if status:
            self.status = status


class NotFound(DepotError):
    code, status = "not_found", 404


class PermissionDenied(DepotError):
    code, status = "forbidden", 403


class Unauthorized(DepotError):
    """No credential, or one that is not (or no longer) valid: a token, a DP key, a device."""

    code, status = "unauthorized", 401


class Conflict(DepotError):
    code, status = "conflict", 409


class RateLimited(DepotError):
    """Too many requests; `retry_after`: the seconds to wait (sent as Retry-After)."""

    code, status = "rate_limited", 429

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


class ContentRootUnavailable(DepotError):
    code, status = "content_root_unavailable", 503


class BadPath(DepotError):
    """A path a DP was asked about that leaves the library folders, or means nothing."""

    code, status = "bad_path", 400


class LinkRefused(DepotError):
    """A download link that is malformed, not signed with the right key, or expired."""

    code, status = "link_refused", 403


class InsufficientStorage(DepotError):
    code, status = "insufficient_storage", 507


class DigestMismatch(DepotError):
    """Bytes that arrived do not have the size or SHA-256 they were announced with."""

    code, status = "digest_mismatch", 422


class JobCancelled(Exception):
    """Raised inside a running job (and the storage calls it makes) when someone cancelled it."""


# --- what a distribution point answers --------------------------------------------------------

class StorageUnavailable(DepotError):
    """The DP did not answer (down, network, throttled, a 5xx): worth trying again later;
    `retry_after`: the seconds the DP asked to wait (a throttling provider's Retry-After)."""

    code, status = "dp_unreachable", 502

    def __init__(self, message: str, *, retry_after: float | None = None, **kw):
        super().__init__(message, **kw)
        self.retry_after = retry_after


class PlanAgain(StorageUnavailable):
    """An upload that cannot go on as planned (a part the DP meant to reuse is not as it was):
    the copy plans it again, at once, and goes on from where the DP stands."""


class StorageRefused(DepotError):
    """The DP answered with a refusal that trying again will not change (with the reason)."""

    code, status = "dp_error", 502


class DamagedInTransit(StorageRefused):
    """The DP's own check of size or hash failed at the end of an upload: send the file again."""

    code = "digest_mismatch"


class NeedsAuth(StorageRefused):
    """The DP's authorisation is gone (a revoked or expired refresh token): a person must
    reconnect it. The job that meets it turns the DP `needs-auth` with a notification."""

    code, status = "dp_needs_auth", 409


def error_body(code: str, message: str, extra: dict | None = None) -> dict:
    """The one JSON shape of every error Depot answers to a program (the API, the agent API, a
    DP node): {"error": {"code", "message", ...extra}}."""
    return {"error": {**(extra or {}), "code": code, "message": message}}
