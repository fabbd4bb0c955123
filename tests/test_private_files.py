"""Everything under instance/ is Depot's user's alone: the folder 0700, the SQLite database with
its -wal and -shm, the embedded Redis's files and the secrets 0600, from the first start and for
an install whose files were made world-readable before."""
import os
import sqlite3
import stat

import pytest

from portal import create_app
from portal.config import TestConfig
from portal.core import private_files
from portal.extensions import db, embedded_redis, stop_embedded_redis

pytestmark = pytest.mark.skipif(os.name == "nt", reason="file modes are POSIX's")


def modes(folder) -> dict[str, int]:
    """Every entry under `folder` (relative path) -> its permission bits."""
    found = {}
    for base, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = os.path.join(base, name)
            found[os.path.relpath(path, folder)] = stat.S_IMODE(os.lstat(path).st_mode)
    return found


def open_to_everyone(folder) -> dict[str, int]:
    return {name: mode for name, mode in modes(folder).items() if mode & 0o077}


@pytest.fixture
def loose_umask():
    """The umask of a shell that makes files world-readable (022), whatever the test runner's."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def build(instance, redis_url="redis://unused") -> dict[str, int]:
    """Build the console on `instance`, write to its database: the modes while it is open."""
    config = type("Fresh", (TestConfig,), {
        "INSTANCE_DIR": str(instance), "SECRET_KEY": None, "REDIS_URL": redis_url,
        "SQLALCHEMY_DATABASE_URI": "sqlite:///" + str(instance / "depot.sqlite")})
    app = create_app(config)
    with app.app_context():
        db.session.execute(db.text("CREATE TABLE t (x)"))  # WAL: -wal and -shm appear
        db.session.execute(db.text("INSERT INTO t VALUES (1)"))
        db.session.commit()
        found = modes(instance)  # the -wal goes when the last connection closes
        db.engine.dispose()
    return found


def test_a_first_start_makes_everything_private(tmp_path, loose_umask):
    """Are the instance folder, the database and its -wal/-shm, the secret key and central's DP
    key, and the embedded Redis's snapshot and append-only files private under umask 022?"""
    instance = tmp_path / "instance"
    with_database = build(instance)
    server = embedded_redis(str(instance))
    try:
        server.set("k", "v")
        server.save()
        socket_dir = os.path.dirname(server.socket_file)
    finally:
        stop_embedded_redis(server)
    found = {**with_database, **modes(instance)}
    assert stat.S_IMODE(os.stat(instance).st_mode) == 0o700
    for name in ("depot.sqlite", "depot.sqlite-wal", "depot.sqlite-shm", "secret_key",
                 "central_dp_key", "redis.rdb"):
        assert found[name] == 0o600, name
    assert any(name.startswith("appendonly") for name in found)
    assert open_to_everyone(instance) == {}
    assert [name for name, mode in with_database.items() if mode & 0o077] == []
    assert not os.path.exists(socket_dir) or stat.S_IMODE(os.stat(socket_dir).st_mode) == 0o700


def test_an_older_install_is_put_right_at_start(tmp_path, loose_umask):
    """Are files an older version left world-readable (and a database that already exists, with
    its -wal) made private at the next start, symbolic links left alone?"""
    instance = tmp_path / "instance"
    instance.mkdir(mode=0o755)
    with sqlite3.connect(instance / "depot.sqlite") as conn:
        conn.execute("CREATE TABLE old (x)")
    (instance / "depot.sqlite-wal").write_bytes(b"")
    (instance / "secret_key").write_text("k" * 64)
    (instance / "appendonlydir").mkdir()
    (instance / "appendonlydir" / "appendonly.aof.1.base.rdb").write_bytes(b"x")
    outside = tmp_path / "shared.txt"
    outside.write_text("not Depot's")
    os.symlink(outside, instance / "link")
    assert open_to_everyone(instance)
    build(instance)
    assert open_to_everyone(instance) == {"link": 0o777}
    assert stat.S_IMODE(os.stat(outside).st_mode) == 0o644  # not followed
    assert stat.S_IMODE(os.stat(instance).st_mode) == 0o700
    assert (instance / "secret_key").read_text() == "k" * 64


def test_a_relative_sqlite_path_is_the_instance_folders(tmp_path, loose_umask):
    """Is a relative SQLite path (Flask-SQLAlchemy: inside the instance folder) made private
    there?"""
    config = type("Relative", (TestConfig,), {
        "INSTANCE_DIR": str(tmp_path / "inst"), "REDIS_URL": "redis://unused",
        "SQLALCHEMY_DATABASE_URI": "sqlite:///relative.sqlite"})
    create_app(config)
    assert stat.S_IMODE(os.stat(tmp_path / "inst" / "relative.sqlite").st_mode) == 0o600


def test_a_file_depot_may_not_change_is_logged_not_fatal(tmp_path, monkeypatch, caplog):
    """When chmod is refused (a file of another user), is it a warning, not a failed start?"""
    def refuse(path, mode):
        raise PermissionError(1, "Operation not permitted")

    target = tmp_path / "theirs"
    target.write_text("x")
    monkeypatch.setattr(os, "chmod", refuse)
    private_files.restrict(str(target), 0o600)
    assert "cannot make" in caplog.text and "theirs" in caplog.text


def test_nothing_is_chmodded_on_windows(tmp_path, monkeypatch):
    """On Windows (os.name == 'nt') are modes left to the folder's ACL: no chmod, no umask?"""
    calls = []
    monkeypatch.setattr(private_files, "posix", lambda: False)
    monkeypatch.setattr(os, "chmod", lambda *a: calls.append(a))
    monkeypatch.setattr(os, "umask", lambda *a: calls.append(a))
    private_files.private_dir(str(tmp_path / "inst"))
    (tmp_path / "inst" / "f").write_text("x")
    private_files.restrict_tree(str(tmp_path / "inst"))
    private_files.private_sqlite(str(tmp_path / "inst" / "db.sqlite"))
    with private_files.private_umask():
        pass
    assert calls == [] and (tmp_path / "inst").is_dir()


def test_joining_a_live_embedded_redis_leaves_the_umask_alone(tmp_path, monkeypatch):
    """A second process (a web worker) joins the running server: is the process-wide umask, which
    its other threads create files under, left untouched then?"""
    instance = tmp_path / "instance"
    server = embedded_redis(str(instance))
    try:
        changed = []
        monkeypatch.setattr(os, "umask", lambda mask: changed.append(mask) or 0o022)
        joined = embedded_redis(str(instance))
        assert joined.socket_file == server.socket_file and joined.ping()
        assert changed == []
    finally:
        monkeypatch.undo()
        stop_embedded_redis(server)
