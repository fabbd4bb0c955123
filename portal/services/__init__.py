"""Domain logic shared by the console, the API, the CLI and the jobs."""


class DepotError(Exception):
    """A domain error with a message meant for people; `code` is the API's error code."""

    code = "invalid"
    status = 400

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        if status:
            self.status = status


class NotFound(DepotError):
    code, status = "not_found", 404


class PermissionDenied(DepotError):
    code, status = "forbidden", 403


class Conflict(DepotError):
    code, status = "conflict", 409


class ContentRootUnavailable(DepotError):
    code, status = "content_root_unavailable", 503
