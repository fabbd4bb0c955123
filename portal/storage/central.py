"""The central DP: a content root on central's own file system.

Endpoints download central's files from central's DP node, a process of its own on its own port
(portal.core.central_node; `flask --app wsgi dp-node central`), never from the console's:
`download_link` gives a link to that node's /dp/v1/download, signed the way every node's links
are (portal.core.signing, kind DP_NODE) with the key central and its node share.
"""
from portal.core import signing
from portal.core.central_node import node_url
from portal.core.errors import DepotError, StorageRefused
from portal.core.files import ContentRoot
from portal.core.paths import library_parts
from portal.storage.base import StorageBackend, StorageEnv


class FilesystemStorage(ContentRoot, StorageBackend):
    """The central DP's content root (see portal.core.files), and the links endpoints download
    its files with."""

    def __init__(self, dp=None, root: str | None = None, *, env: StorageEnv | None = None,
                 secret: str | None = None):
        StorageBackend.__init__(self, dp, env=env)
        ContentRoot.__init__(self, root or dp.root)

    def download_link(self, path: str, ttl_seconds: int) -> str:
        """A signed link to central's DP node for the file, valid `ttl_seconds`."""
        if not 1 <= ttl_seconds <= signing.MAX_LINK_SECONDS:
            raise StorageRefused(f"a central download link lives from 1 s to "
                                 f"{signing.MAX_LINK_SECONDS} s")
        url, key = self._node(path)
        return signing.sign(signing.DP_NODE, url, key, path, ttl_seconds)

    def node_link(self, path: str, expires: int) -> str:
        """A link to central's DP node for the file that expires at `expires` (a Unix time)."""
        url, key = self._node(path)
        return signing.sign_until(signing.DP_NODE, url, key, path, expires)

    def _node(self, path: str) -> tuple[str, str]:
        """Where central's DP node is and the key its links are signed with."""
        if self.dp is None or not self.dp.is_central:
            raise StorageRefused("only the central DP gives download links from its file system")
        library_parts(path)
        try:
            url = node_url(self.env.setting("DEPOT_CENTRAL_DP_URL"), self.env.public_url,
                           self.env.setting("DEPOT_CENTRAL_DP_BIND", "0.0.0.0:8081"))
        except DepotError as exc:
            raise StorageRefused(exc.message) from None
        key = self.env.setting("DEPOT_CENTRAL_DP_KEY")
        if not url or not key:
            raise StorageRefused("set DEPOT_PUBLIC_URL or DEPOT_CENTRAL_DP_URL (the address "
                                 "endpoints reach central's DP node at) to give central download "
                                 "links")
        return url, key
