"""The DP node's certificate: one given (`--cert FILE --key FILE`) or a self-signed pair made on
first start (`--self-signed`), kept in `<root>/.depot/tls/` and reused on every later start, so
its fingerprint, which central pins, stays the same."""
import datetime
import ipaddress
import os
import socket
import ssl

from portal.core import tls
from portal.dpnode import NodeMisconfigured

SELF_SIGNED_DIR = os.path.join(".depot", "tls")
CERT_NAME, KEY_NAME = "node.crt", "node.key"
VALID_DAYS = 10 * 365  # the fingerprint is what is trusted, not the dates: no yearly re-pinning


def self_signed_paths(root: str) -> tuple[str, str]:
    """Where a node on `root` keeps its own certificate and key."""
    folder = os.path.join(root, SELF_SIGNED_DIR)
    return os.path.join(folder, CERT_NAME), os.path.join(folder, KEY_NAME)


def ensure_self_signed(root: str, hostname: str | None = None) -> tuple[str, str]:
    """The node's self-signed certificate and key files, made now if there are none yet (the key
    readable by this user only where the system has POSIX modes)."""
    cert_path, key_path = self_signed_paths(root)
    if os.path.exists(cert_path) and os.path.exists(key_path):
        return cert_path, key_path
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    os.makedirs(os.path.dirname(cert_path), exist_ok=True)
    hostname = hostname or socket.gethostname() or "depot-dp-node"
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname[:64]),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Depot DP node")])
    now = datetime.datetime.now(datetime.timezone.utc)
    names = [x509.DNSName(hostname), x509.DNSName("localhost"),
             x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    _write_private(key_path, key_pem)
    with open(cert_path, "wb") as fh:
        fh.write(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def _write_private(path: str, data: bytes) -> None:
    """Write a key file created 0600 (on Windows the folder's ACL applies: keep the root
    private)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    if os.name != "nt":
        os.chmod(path, 0o600)  # an existing file keeps its mode through O_CREAT


def resolve(root: str, cert: str | None, key: str | None,
            self_signed: bool) -> tuple[str, str] | None:
    """The certificate and key files to serve with, checked to load together (None: plain HTTP);
    NodeMisconfigured for a half-given pair, both ways at once, or files that will not load."""
    if self_signed and (cert or key):
        raise NodeMisconfigured("give either --cert and --key or --self-signed, not both")
    if bool(cert) != bool(key):
        raise NodeMisconfigured("--cert and --key go together: the certificate and its private key")
    if self_signed:
        cert, key = ensure_self_signed(root)
    if not cert:
        return None
    cert, key = os.path.abspath(cert), os.path.abspath(key)
    for label, path in (("certificate", cert), ("key", key)):
        if not os.path.isfile(path):
            raise NodeMisconfigured(f"the {label} file {path} does not exist")
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise NodeMisconfigured(f"the certificate {cert} and key {key} do not load together: "
                                f"{exc}") from None
    return cert, key


def fingerprint_line(cert: str) -> str:
    """What the node prints at start, for the admin to compare with what the console shows."""
    return f"TLS certificate SHA-256 fingerprint: {tls.display(tls.fingerprint_file(cert))}"
