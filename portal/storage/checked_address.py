"""Connections to the addresses that were checked, not to what a name resolves to next.

Depot refuses to send a DP key to (or let a connection test probe) a link-local or cloud metadata
address (portal.storage.dpnode.check_address). Checking what a name resolves to and then
connecting by name resolves it twice: a rebinding DNS server can answer a harmless address to the
check and 169.254.169.254 to the connection. So the name is resolved once, and the connection
goes to the addresses checked (in the resolver's order, the next one when one refuses), while the
Host header, TLS SNI and the certificate checks keep the name.

The connection classes are urllib3's own with one method replaced: `_new_conn`, which urllib3
documents as where its connections open their socket (by `_dns_host`, the name).
"""
import socket

import requests
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError
from urllib3.util.connection import create_connection


class _ToCheckedAddresses:
    """Mixed into urllib3's connections: the socket goes to `addresses`."""

    host: str
    addresses: tuple[str, ...] = ()

    def _new_conn(self) -> socket.socket:
        failure: Exception = NewConnectionError(self, "no address to connect to")
        for address in self.addresses:
            try:
                return create_connection((address, self.port), self.timeout,
                                         source_address=self.source_address,
                                         socket_options=self.socket_options)
            except socket.timeout:
                failure = ConnectTimeoutError(self, f"Connection to {self.host} timed out. "
                                                    f"(connect timeout={self.timeout})")
            except OSError as exc:
                failure = NewConnectionError(self, f"Failed to establish a new connection: {exc}")
        raise failure


def connect_to_checked(session: requests.Session, addresses) -> None:
    """Make every connection `session` opens go to `addresses` (checked already): the session
    is one DP node's, and redirects are not followed (DpNodeStorage._call)."""
    attrs = {"addresses": tuple(addresses)}
    http = type("CheckedHTTPConnection", (_ToCheckedAddresses, HTTPConnection), attrs)
    https = type("CheckedHTTPSConnection", (_ToCheckedAddresses, HTTPSConnection), attrs)
    pools = {"http": type("CheckedHTTPPool", (HTTPConnectionPool,), {"ConnectionCls": http}),
             "https": type("CheckedHTTPSPool", (HTTPSConnectionPool,), {"ConnectionCls": https})}
    for adapter in session.adapters.values():
        manager = adapter.poolmanager
        manager.clear()  # no pool made before may keep connecting by name
        manager.pool_classes_by_scheme = pools
