"""The DP node's portable paths (Windows), tried on Linux: locks without flock, no folder fsync,
the server and root a Windows node picks, and the node modules with POSIX-only modules gone."""
import hashlib
import json
import os
import subprocess
import sys
import threading

import pytest

from portal.config import BASE_DIR
from portal.core import fileio, locks
from portal.dpnode import NodeMisconfigured, cli, config
from tests.helpers import poll
from tests.node_fixtures import KEY


@pytest.fixture(params=[True, False], ids=["flock", "threads"])
def lock_kind(request, monkeypatch):
    """Each test below once with flock and once with the locks a Windows node takes."""
    monkeypatch.setattr(locks, "ON_FILE", request.param)
    return request.param


def test_shared_locks_share_and_exclusive_waits(tmp_path, lock_kind):
    """Do shared holders coexist, is an exclusive lock refused (non-blocking) while they hold,
    and does a blocking one get its turn once they let go?"""
    path = tmp_path / "part"
    path.write_bytes(b"x")
    got = threading.Event()

    def exclusive():
        with locks.open_locked(path, os.O_RDWR):
            got.set()

    with locks.open_locked(path, os.O_RDWR, shared=True), \
            locks.open_locked(path, os.O_RDWR, shared=True):
        with pytest.raises(BlockingIOError):
            with locks.open_locked(path, os.O_RDWR, blocking=False):
                pass
        waiter = threading.Thread(target=exclusive)
        waiter.start()
        assert not got.is_set()  # cannot have run: both shared locks are still held
    poll(got.is_set, timeout=30, message="the exclusive lock after the shared ones")
    waiter.join()
    assert locks._table == {}  # the thread locks forget a file nobody holds


def test_a_missing_file_is_not_locked(tmp_path, lock_kind):
    """Does locking a file that is not there raise FileNotFoundError and leave nothing held?"""
    with pytest.raises(FileNotFoundError):
        with locks.open_locked(tmp_path / "gone", os.O_RDWR):
            pass
    assert locks._table == {}


def test_close_early_keeps_the_lock(tmp_path, lock_kind):
    """Without flock, does close_early close the file (Windows renames no open file) while the
    lock still holds; with flock, does it keep the file (and so the lock) open?"""
    path = tmp_path / "part"
    path.write_bytes(b"x")
    with locks.open_locked(path, os.O_RDWR) as held:
        held.close_early()
        assert (held.fd == -1) is (not lock_kind)
        os.replace(path, tmp_path / "placed")
        if not lock_kind:  # the lock is the path's, held until the block ends
            with pytest.raises(BlockingIOError):
                with locks.open_locked(path, os.O_RDWR | os.O_CREAT, blocking=False):
                    pass
    assert (tmp_path / "placed").read_bytes() == b"x"


def test_folder_fsync_is_skipped_on_windows(tmp_path, monkeypatch):
    """Does fsync_dir fsync a folder on POSIX (a missing one fails) and open nothing on Windows?"""
    fileio.fsync_dir(tmp_path)
    with pytest.raises(FileNotFoundError):
        fileio.fsync_dir(tmp_path / "missing")
    monkeypatch.setattr(os, "name", "nt")
    assert fileio.fsync_dir(tmp_path / "missing") is None


def test_windows_defaults(monkeypatch):
    """Does a Windows node default to waitress and C:\\Depot, and a Linux one to gunicorn?"""
    assert (cli.default_server(), config.default_root()) == (
        "gunicorn", str(BASE_DIR / "data" / "dp-node"))
    monkeypatch.setattr(os, "name", "nt")
    assert (cli.default_server(), config.default_root()) == ("waitress", "C:\\Depot")


@pytest.mark.parametrize("server, workers, bind, windows, message", [
    ("gunicorn", 1, "0.0.0.0:8081", True, "gunicorn does not run on Windows"),
    (None, 2, "0.0.0.0:8081", True, "waitress serves from one process"),
    ("waitress", 1, "8081", False, "is not HOST:PORT"),
    ("waitress", 1, "0.0.0.0:http", False, "is not HOST:PORT"),
    ("nginx", 1, "0.0.0.0:8081", False, "unknown server 'nginx'"),
])
def test_server_choices_that_cannot_work_are_refused(tmp_path, monkeypatch, server, workers,
                                                     bind, windows, message):
    """Is a server that cannot run (gunicorn on Windows, waitress with workers, a bind waitress
    cannot read, an unknown name) refused before anything starts, with a clear message?"""
    monkeypatch.setenv("DEPOT_DP_KEY", KEY)
    if windows:
        monkeypatch.setattr(os, "name", "nt")
    with pytest.raises(NodeMisconfigured, match=message):
        cli.serve(str(tmp_path), bind, workers, server)


def test_the_command_says_what_is_wrong(tmp_path, monkeypatch, capsys):
    """Does `python -m portal.dpnode run --server waitress --workers 2` exit 2 with the reason?"""
    monkeypatch.setenv("DEPOT_DP_KEY", KEY)
    assert cli.main(["run", "--root", str(tmp_path), "--server", "waitress", "--workers", "2"]) == 2
    assert "waitress serves from one process" in capsys.readouterr().err


WITHOUT_POSIX = r"""
import hashlib, json, os, sys
for name in ("fcntl", "termios", "resource", "pwd", "grp"):
    sys.modules[name] = None  # import fails, as on Windows
for name in ("pread", "pwrite", "posix_fadvise", "O_NOFOLLOW"):  # (statvfs: shutil's, not ours)
    if hasattr(os, name):
        delattr(os, name)
from portal.core import fileio, files, locks, signing
from portal.dpnode import create_node_app
from portal.dpnode.config import NodeConfig
from portal.dpnode.uploads import UploadStore
assert not locks.ON_FILE and not fileio.HAVE_PREAD and files.O_NOFOLLOW == 0
root, key = sys.argv[1], "k" * 20
app = create_node_app(type("C", (NodeConfig,), {"DEPOT_DP_ROOT": root, "DEPOT_DP_KEY": key,
                                                 "DEPOT_DP_RESERVE_BYTES": 0}))
http = app.test_client()
auth = {"Authorization": f"Bearer {key}"}
data = os.urandom(300_000)
sha = hashlib.sha256(data).hexdigest()
uid = http.post("/dp/v1/uploads", headers=auth,
                json={"path": "Images/a.wim", "size": len(data), "sha256": sha}).json["id"]
for start in (200_000, 0, 100_000):  # out of order
    got = http.patch(f"/dp/v1/uploads/{uid}", data=data[start:start + 100_000],
                     headers={**auth, "Upload-Offset": str(start)})
    assert got.status_code == 200, got.json
done = http.post(f"/dp/v1/uploads/{uid}/finish", headers=auth)
assert done.status_code == 200 and done.json["sha256"] == sha, done.json
other = http.post("/dp/v1/uploads", headers=auth,
                  json={"path": "Images/b.wim", "size": 3, "sha256": "0" * 64}).json["id"]
assert http.delete(f"/dp/v1/uploads/{other}", headers=auth).status_code == 204
lines = [json.loads(l) for l in http.get("/dp/v1/inventory", headers=auth).data.splitlines()]
files_seen = {r["path"]: r["sha256"] for r in lines if r["type"] == "file"}
link = signing.sign(signing.DP_NODE, "", key, "Images/a.wim", 600)
ranged = http.get(link, headers={"Range": "bytes=1000-1999"})
assert ranged.status_code == 206 and ranged.data == data[1000:2000]
print(json.dumps({"files": files_seen, "left": sorted(os.listdir(os.path.join(
    root, ".depot", "uploads"))), "fcntl": "fcntl" in sys.modules and sys.modules["fcntl"] is not None,
    "swept": UploadStore(root, 0, -1).sweep() == []}))
"""


@pytest.mark.slow
def test_the_node_works_without_posix_only_modules(tmp_path):
    """With fcntl (and the other POSIX-only modules and os calls) gone, as on Windows, do the node
    modules import, and do uploads (out of order, finish, abort), the inventory and a Range
    download work, leaving no upload state behind?"""
    out = subprocess.run([sys.executable, "-c", WITHOUT_POSIX, str(tmp_path)], cwd=str(BASE_DIR),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    probe = json.loads(out.stdout.splitlines()[-1])
    data = (tmp_path / "Images" / "a.wim").read_bytes()
    assert probe["files"] == {"Images/a.wim": hashlib.sha256(data).hexdigest()}
    assert not probe["fcntl"] and probe["swept"]
    assert [name for name in probe["left"] if not name.endswith(".done")] == []
