"""Storage backends: one class per kind of DP behind one interface, picked by `storage_for`."""
from portal.storage.base import FileEntry, StorageBackend
from portal.storage.central import FilesystemStorage
from portal.storage.dpnode import DpNodeStorage

_REGISTRY: dict[tuple[str, str | None], type[StorageBackend]] = {
    ("central", None): FilesystemStorage,
    ("local", None): DpNodeStorage,
}


def storage_for(dp) -> StorageBackend:
    """The backend that reaches this DP's content."""
    try:
        cls = _REGISTRY[(dp.kind, dp.provider)]
    except KeyError:
        raise LookupError(f"no storage backend for {dp.kind}/{dp.provider}") from None
    return cls(dp)


__all__ = ["FileEntry", "StorageBackend", "storage_for"]
