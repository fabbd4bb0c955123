"""The central DP: a content root on central's own file system.

Endpoints download from central too: `download_link` gives a link to `/agent/v1/download` on this
server, signed with SECRET_KEY (portal.core.signing, kind CENTRAL); the route checks it and serves
the file with HTTP Range, no login needed.
"""
from portal.core import signing
from portal.core.errors import StorageRefused
from portal.core.files import ContentRoot
from portal.core.paths import library_parts
from portal.core.signing import MAX_LINK_SECONDS
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
        if not 1 <= ttl_seconds <= MAX_LINK_SECONDS:
            raise StorageRefused(f"a central download link lives from 1 s to {MAX_LINK_SECONDS} s")
        library_parts(path)
        if not self.env.public_url or not self.env.link_secret:
            raise StorageRefused("set DEPOT_PUBLIC_URL (the address endpoints reach the central "
                                 "server at) to give central download links")
        return signing.sign(signing.CENTRAL, self.env.public_url, self.env.link_secret, path,
                            ttl_seconds)

