"""Where a deployment's files go on the endpoint: paths from the manifest confined under the
agent's target folder, and files an earlier run already staged whole."""
import hashlib
import os


class BadPath(Exception):
    """A path from the manifest that would not stay under the folder it is meant for."""


def confined(root: str, path) -> str:
    """`path` (a library path like Images/Win11.wim) under `root`; BadPath for absolute paths,
    '..', empty parts or NUL, or a symlink leading out."""
    if not isinstance(path, str) or not path or "\0" in path or os.path.isabs(path) \
            or path.startswith(("/", "\\")) or (len(path) > 1 and path[1] == ":"):
        raise BadPath(f"refused path {path!r}: it must be relative")
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise BadPath(f"refused path {path!r}: empty, '.' or '..' parts")
    full = os.path.join(root, *parts)
    real_root = os.path.realpath(root)
    if not os.path.realpath(full).startswith(real_root + os.sep):
        raise BadPath(f"refused path {path!r}: it leads out of {root}")
    return full


def size_or_zero(path: str) -> int:
    """The size of the file at `path`, 0 when there is none."""
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def is_hex_digest(value) -> bool:
    """True for a SHA-256 in lowercase hex (safe as a file name)."""
    return isinstance(value, str) and len(value) == 64 \
        and all(c in "0123456789abcdef" for c in value)


def already_staged(path: str, size: int, sha256: str) -> bool:
    """A staged file that is already this one (an earlier run staged it before it stopped)."""
    try:
        if os.path.getsize(path) != size:
            return False
        hasher = hashlib.sha256()
        with open(path, "rb") as fh:
            while block := fh.read(1024 * 1024):
                hasher.update(block)
        return hasher.hexdigest() == sha256
    except OSError:
        return False
