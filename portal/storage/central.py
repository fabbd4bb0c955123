"""The central DP: a content root on central's own file system.

Endpoints download from central too: `download_link` gives a link to `/agent/v1/download` on this
server, signed with SECRET_KEY (portal.core.signing, kind CENTRAL); the route checks it and serves
the file with HTTP Range, no login needed.
"""
from portal.core import signing
from portal.core.errors import StorageRefused
from portal.core.files import ContentRoot
from portal.storage.base import StorageBackend, StorageEnv


class FilesystemStorage(ContentRoot, StorageBackend):
    """The central DP's content root (see portal.core.files), and the links endpoints download
    its files with."""

    def __init__(self, dp=None, root: str | None = None, *, env: StorageEnv | None = None,
                 secret: str | None = None):
        StorageBackend.__init__(self, dp, env=env)
        ContentRoot.__init__(self, root or dp.root)

    def download_link(self, path: str, ttl_seconds: int) -> str:
        """A signed link to this server's /agent/v1/download for the file, valid `ttl_seconds`."""
        if self.dp is None or not self.dp.is_central:
            raise StorageRefused("only the central DP gives download links from its file system")
        return self.env.signed_link(signing.CENTRAL, path, ttl_seconds, "central")

