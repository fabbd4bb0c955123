"""Storage backends: one class per kind of DP behind one interface, picked by `storage_for`.

A provider is one module; it is imported only when a DP of its kind is used, so a missing optional
dependency of one provider never stops the others.
"""
from importlib import import_module

from portal.storage.base import FileEntry, StorageBackend

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


def backend_class(kind: str, provider: str | None) -> type[StorageBackend]:
    try:
        module, name = _REGISTRY[(kind, provider)].split(":")
    except KeyError:
        raise LookupError(f"no storage backend for {kind}/{provider}") from None
    return getattr(import_module(module), name)


def storage_for(dp) -> StorageBackend:
    """The backend that reaches this DP's content."""
    return backend_class(dp.kind, dp.provider)(dp)


__all__ = ["CLOUD_PROVIDERS", "FileEntry", "StorageBackend", "backend_class", "storage_for"]
