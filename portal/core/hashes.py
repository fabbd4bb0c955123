"""SHA-256 and the providers' own hashes of a file, computed in one pass.

Central computes, beside each file's SHA-256, the hash each cloud provider in use computes on its
side, so a rescan of a cloud DP can tell content already in the account (put there by an older
console, or by hand) from other content without downloading anything:
- `quickxor`: OneDrive's QuickXorHash, base64 (the `quickxorhash` C extension);
- `md5`: Google Drive's md5Checksum, hex;
- `dropbox`: Dropbox's content_hash, hex: SHA-256 of the SHA-256 digests of each 4 MiB block.
"""
import base64
import hashlib

DROPBOX_BLOCK = 4 * 1024 * 1024
# The hash each provider computes on its side (S3 has none central can compute: its ETag depends
# on the part size the writer chose).
PROVIDER_HASH = {"onedrive": "quickxor", "gdrive": "md5", "dropbox": "dropbox"}


class DropboxContentHash:
    """Dropbox's content_hash, fed in pieces of any size."""

    def __init__(self):
        self._blocks = hashlib.sha256()
        self._block = hashlib.sha256()
        self._in_block = 0

    def update(self, data) -> None:
        view = memoryview(data)
        while view:
            take = min(len(view), DROPBOX_BLOCK - self._in_block)
            self._block.update(view[:take])
            self._in_block += take
            view = view[take:]
            if self._in_block == DROPBOX_BLOCK:
                self._blocks.update(self._block.digest())
                self._block, self._in_block = hashlib.sha256(), 0

    def hexdigest(self) -> str:
        blocks = self._blocks.copy()
        if self._in_block:
            blocks.update(self._block.digest())
        return blocks.hexdigest()


class QuickXorHash:
    """OneDrive's QuickXorHash, base64 as Graph gives it."""

    def __init__(self):
        import quickxorhash  # only central computes it: a DP node installs without it

        self._hash = quickxorhash.quickxorhash()

    def update(self, data) -> None:
        self._hash.update(bytes(data) if isinstance(data, memoryview) else data)

    def hexdigest(self) -> str:  # the name every hasher here answers to; Graph's form is base64
        return base64.b64encode(self._hash.digest()).decode()


def _md5():
    return hashlib.md5(usedforsecurity=False)


MAKERS = {"quickxor": QuickXorHash, "md5": _md5, "dropbox": DropboxContentHash}


class Hasher:
    """SHA-256 plus the provider hashes `kinds`, over the same bytes."""

    def __init__(self, kinds=()):
        self.sha256 = hashlib.sha256()
        self.others = {kind: MAKERS[kind]() for kind in kinds}

    def update(self, data) -> None:
        self.sha256.update(data)
        for hasher in self.others.values():
            hasher.update(data)

    def hashes(self) -> dict[str, str]:
        return {kind: hasher.hexdigest() for kind, hasher in self.others.items()}


def provider_hashes(data: bytes, kinds=tuple(MAKERS)) -> dict[str, str]:
    """The provider hashes of some bytes held in memory (tests, small files)."""
    hasher = Hasher(kinds)
    hasher.update(data)
    return hasher.hashes()
