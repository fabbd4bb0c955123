"""Every path a DP is asked about, confined to the six library folders (of a DP node's root, or
of a cloud DP's folder)."""
import os

from portal.core.errors import BadPath
from portal.core.libraries import LIBRARIES
from portal.core.names import unescape_component


def library_parts(rel, *, inside: bool = True, asset: bool = False) -> list[bytes]:
    """The unescaped components of `rel`, an escaped inventory path ('Images/Win11.wim',
    'Media/bad\\xffname.iso') that starts with a library folder and, with `inside`, names something
    in it (with `asset`, exactly one level in); BadPath saying why otherwise: absolute paths,
    empty, '.' and '..' components, '/' or NUL, before and after unescaping. Every backend checks
    its paths here before it touches a DP."""
    if not isinstance(rel, str) or not rel:
        raise BadPath("path must be a non-empty string")
    if rel.startswith("/"):
        raise BadPath(f"path must be relative to the root: {rel!r}")
    parts = rel.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise BadPath(f"path may not contain empty, '.' or '..' parts: {rel!r}")
    if parts[0] not in LIBRARIES:
        raise BadPath(f"path must start with a library folder ({', '.join(LIBRARIES)}): {rel!r}")
    if (inside or asset) and (len(parts) < 2 or (asset and len(parts) != 2)):
        raise BadPath(f"path must name {'an asset' if asset else 'a file'} inside a library: {rel!r}")
    try:
        raw = [unescape_component(part) for part in parts]
    except (ValueError, UnicodeError):
        raise BadPath(f"path has an escape that means nothing: {rel!r}") from None
    # Checked again on the real bytes: an escaped '\x2e\x2e' is '..' once unescaped.
    if any(part in (b"", b".", b"..") or b"/" in part or b"\0" in part for part in raw):
        raise BadPath(f"path may not contain empty, '.' or '..' parts, '/' or NUL: {rel!r}")
    return raw


def confine(root: str, rel, *, asset: bool = False) -> bytes:
    """The absolute (bytes) path of `rel` under `root`, or BadPath saying why it is refused:
    `library_parts`, and no existing folder on the way may be a symlink leading out of the root.
    """
    raw = library_parts(rel, asset=asset)
    root_b = os.fsencode(os.path.realpath(root))
    path = os.path.join(root_b, *raw)
    library = os.path.join(root_b, raw[0])
    parent = os.path.realpath(os.path.dirname(path))
    if not (parent == library or parent.startswith(library + b"/")):
        raise BadPath(f"path leads out of its library folder through a symlink: {rel!r}")
    return path


def inside_root(root: str, path: bytes) -> bool:
    """True when `path`, with every symlink resolved, is inside the root."""
    root_b = os.fsencode(os.path.realpath(root))
    real = os.path.realpath(path)
    return real.startswith(root_b + b"/")
