"""Storage backends: one class per kind of DP behind one interface, picked by `storage_for`.

A provider is one module; it is imported only when a DP of its kind is used, so a missing optional
dependency of one provider never stops the others. Storage sits on `portal.core` alone: what a
backend needs of the server (credentials, settings, where tokens are kept) is handed down to it by
the service that opens it (`portal.services.backends.open_storage`).
"""
from importlib import import_module

from portal.storage.base import StorageBackend, StorageEnv

_REGISTRY: dict[tuple[str, str | None], str] = {
    ("central", None): "portal.storage.central:FilesystemStorage",
    ("local", None): "portal.storage.dpnode:DpNodeStorage",
    ("cloud", "s3"): "portal.storage.s3:S3Storage",
    ("cloud", "onedrive"): "portal.storage.onedrive:OneDriveStorage",
    ("cloud", "gdrive"): "portal.storage.gdrive:GoogleDriveStorage",
    ("cloud", "dropbox"): "portal.storage.dropbox:DropboxStorage",
}
CLOUD_PROVIDERS = {"s3": "S3-compatible", "onedrive": "OneDrive", "gdrive": "Google Drive",
                   "dropbox": "Dropbox"}
OAUTH_PROVIDERS = ("onedrive", "gdrive", "dropbox")


def backend_class(kind: str, provider: str | None) -> type[StorageBackend]:
    """The backend class of a kind of DP (LookupError for one Depot does not know)."""
    try:
        module, name = _REGISTRY[(kind, provider)].split(":")
    except KeyError:
        raise LookupError(f"no storage backend for {kind}/{provider}") from None
    return getattr(import_module(module), name)


def storage_for(dp, *, secret: str | None = None, env: StorageEnv | None = None,
                tokens=None) -> StorageBackend:
    """The backend that reaches this DP's content, given its decrypted `secret`, the server's
    `env` and, for an OAuth DP, the `tokens` store its renewed tokens go to."""
    extra = {"tokens": tokens} if dp.provider in OAUTH_PROVIDERS else {}
    return backend_class(dp.kind, dp.provider)(dp, secret=secret, env=env, **extra)


__all__ = ["CLOUD_PROVIDERS", "OAUTH_PROVIDERS", "StorageBackend", "StorageEnv", "backend_class",
           "storage_for"]
