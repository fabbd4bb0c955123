"""TLS certificate fingerprints: how a DP node's certificate is named, pinned and compared.

A fingerprint is the SHA-256 of the certificate's DER bytes, kept as 64 lowercase hex digits and
shown as "AB:CD:..." (the form `openssl x509 -fingerprint -sha256` and browsers print). Standard
library only: the agent checks pins the same way with its own copy of `normalise`.
"""
import hashlib
import re
import socket
import ssl

from portal.core.errors import DepotError

HEX64 = re.compile(r"^[0-9a-f]{64}$")


def fingerprint_der(der: bytes) -> str:
    """The SHA-256 fingerprint of a certificate in DER form (64 lowercase hex digits)."""
    return hashlib.sha256(der).hexdigest()


def fingerprint_pem(pem: str | bytes) -> str:
    """The fingerprint of the first certificate in PEM text; ValueError if there is none."""
    text = pem.decode("ascii", "replace") if isinstance(pem, bytes) else pem
    match = re.search(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", text, re.S)
    if not match:
        raise ValueError("no PEM certificate found")
    return fingerprint_der(ssl.PEM_cert_to_DER_cert(match.group(0)))


def fingerprint_file(path: str) -> str:
    """The fingerprint of a certificate file, PEM or DER."""
    with open(path, "rb") as fh:
        data = fh.read()
    if b"-----BEGIN" in data:
        return fingerprint_pem(data)
    return fingerprint_der(data)


def normalise(value) -> str:
    """A fingerprint as stored: "AB:CD:...", "ab cd ...", "sha256/ABCD..." all become 64 lowercase
    hex digits; DepotError for anything that is not a SHA-256 fingerprint."""
    if not isinstance(value, str):
        raise DepotError("a TLS fingerprint must be text (64 hex digits, colons allowed)")
    text = value.strip().lower()
    for prefix in ("sha256:", "sha256/", "sha-256:", "sha256 fingerprint="):
        if text.startswith(prefix):
            text = text[len(prefix):]
    text = re.sub(r"[\s:\-]", "", text)
    if not HEX64.match(text):
        raise DepotError("a TLS fingerprint must be a SHA-256 fingerprint: 64 hex digits, as "
                         "dp-node prints it (AB:CD:...)")
    return text


def display(fingerprint: str | None) -> str:
    """A stored fingerprint as people read it: "AB:CD:EF:..."."""
    if not fingerprint:
        return ""
    upper = fingerprint.upper()
    return ":".join(upper[i:i + 2] for i in range(0, len(upper), 2))


def presented_fingerprint(host: str, port: int, timeout: float = 10, addresses=None) -> str:
    """The fingerprint of the certificate a TLS server at host:port presents, read without
    trusting it (nothing is sent but the handshake): what an admin is shown before pinning it.
    `addresses`: connect to the first of these that answers (the ones the name was checked to
    resolve to), not to what the name resolves to now. OSError (or ssl.SSLError) when no TLS
    server answers there."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with _open(host, port, timeout, addresses) as raw:
        with context.wrap_socket(raw, server_hostname=host) as tls:
            der = tls.getpeercert(binary_form=True)
    if not der:
        raise ssl.SSLError("the server presented no certificate")
    return fingerprint_der(der)


def _open(host: str, port: int, timeout: float, addresses) -> socket.socket:
    if not addresses:
        return socket.create_connection((host, port), timeout=timeout)
    failure: OSError = OSError("no address to connect to")
    for address in addresses:
        try:
            return socket.create_connection((address, port), timeout=timeout)
        except OSError as exc:
            failure = exc
    raise failure
