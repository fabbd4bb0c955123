"""Files only the user Depot runs as may read: the instance folder (the SQLite database and its
-wal and -shm, the embedded Redis's data, the secret key and central's DP key).

Folders are made 0700 and files 0600 when they are created, and the instance folder is put right
at every start (an install from before, or a file copied in by hand). The embedded Redis server
is started under umask 077, so the files it writes later (each save makes a new one) are
private too. On Windows (`os.name == "nt"`), where chmod only sets the read-only flag and access
is the folder's ACL's business, nothing is changed.
"""
import contextlib
import logging
import os
import stat

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")

log = logging.getLogger(__name__)


def posix() -> bool:
    """True where file modes mean who may read (not on Windows)."""
    return os.name != "nt"


def restrict(path: str, mode: int) -> None:
    """Set `path`'s mode (POSIX only); a file Depot may not change is logged, not fatal."""
    if not posix():
        return
    try:
        os.chmod(path, mode)
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("cannot make %s private (mode %o): %s", path, mode, exc)


def private_dir(path: str) -> None:
    """Create the folder `path` (and its parents) if missing, and make it 0700."""
    os.makedirs(path, mode=PRIVATE_DIR, exist_ok=True)
    restrict(path, PRIVATE_DIR)


def restrict_tree(path: str) -> None:
    """Take every permission of group and others from what is under `path` (files 0600 or 0700
    when executable, folders 0700); symbolic links are left alone, not followed."""
    if not posix():
        return
    for folder, dirs, files in os.walk(path):
        for name in dirs + files:
            entry = os.path.join(folder, name)
            try:
                st = os.lstat(entry)
            except OSError:
                continue
            if stat.S_ISLNK(st.st_mode):
                continue
            if stat.S_IMODE(st.st_mode) & 0o077:
                restrict(entry, stat.S_IMODE(st.st_mode) & 0o700)


def private_sqlite(path: str) -> None:
    """A SQLite database file that only its owner reads: created empty with 0600 when missing
    (SQLite gives its -wal and -shm the database's mode), and put right with its companions
    when it exists."""
    if not path or path == ":memory:" or not posix():
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    except FileExistsError:
        pass
    except OSError as exc:  # a folder that does not exist: SQLite says so when it connects
        log.warning("cannot create the database %s: %s", path, exc)
        return
    else:
        os.close(fd)
    for suffix in ("", *SQLITE_COMPANIONS):
        if os.path.exists(path + suffix):
            restrict(path + suffix, PRIVATE_FILE)


@contextlib.contextmanager
def private_umask():
    """Within the block, what this process (and a child it starts) creates is private: umask
    077. (Process-wide: for a start-up step such as the embedded Redis's, not for threads.)"""
    if not posix():
        yield
        return
    previous = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(previous)
