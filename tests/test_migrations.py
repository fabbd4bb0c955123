"""The Alembic migrations build exactly the schema the models describe (SQLite or PostgreSQL)."""
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from portal.extensions import db


def test_migrations_match_the_models(app):
    """Does `flask db upgrade` give the models' schema, with nothing left for autogenerate?"""
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, db.metadata)
    assert diff == []


def test_only_one_active_job_per_dedup_key_is_enforced_by_the_database(app):
    """Is the partial unique index on active jobs present after migrating?"""
    indexes = {ix["name"]: ix for ix in inspect(db.engine).get_indexes("jobs")}
    assert indexes["uq_jobs_active_dedup_key"]["unique"]


def test_0007_keeps_existing_plain_http_nodes_working(app):
    """Does upgrading to 0007 mark DP nodes already reached over http:// as allowed plain HTTP
    (so nothing stops on upgrade), and leave https nodes and others unticked?"""
    from flask_migrate import downgrade, upgrade
    from sqlalchemy import text

    db.session.remove()
    downgrade(revision="0006")
    try:
        with db.engine.begin() as conn:
            for name, kind, url in [("Plain", "local", "http://dp:8081"),
                                    ("Secure", "local", "https://dp:8443"),
                                    ("Bucket", "cloud", None)]:
                conn.execute(text("INSERT INTO distribution_points (name, kind, site, url, status, "
                                  "disabled, created_at) VALUES (:n, :k, '', :u, 'online', "
                                  ":f, CURRENT_TIMESTAMP)"),
                             {"n": name, "k": kind, "u": url, "f": False})
    finally:
        upgrade(revision="head")
    with db.engine.connect() as conn:
        rows = dict(conn.execute(text(
            "SELECT name, allow_plain_http FROM distribution_points "
            "WHERE name IN ('Plain', 'Secure', 'Bucket')")).all())
    assert {k: bool(v) for k, v in rows.items()} == {"Plain": True, "Secure": False,
                                                     "Bucket": False}


def test_0008_gives_existing_users_session_version_0(app):
    """Does upgrading to 0008 keep existing users, each at session version 0 (and downgrading
    drop the column again)?"""
    from flask_migrate import downgrade, upgrade
    from sqlalchemy import text

    db.session.remove()
    downgrade(revision="0007")
    try:
        assert "session_version" not in {c["name"] for c in inspect(db.engine).get_columns("users")}
        with db.engine.begin() as conn:
            conn.execute(text("INSERT INTO users (email, password_hash, role, sites, active, "
                              "created_at) VALUES ('old@example.com', 'x', 'admin', '[]', :t, "
                              "CURRENT_TIMESTAMP)"), {"t": True})
    finally:
        upgrade(revision="head")
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT session_version FROM users "
                                 "WHERE email = 'old@example.com'")).scalar_one() == 0


def test_0010_adds_two_step_sign_in_off_for_everyone(app):
    """Does upgrading to 0010 keep existing users with two-step sign-in off (and downgrading
    drop its columns and the recovery codes again)?"""
    from flask_migrate import downgrade, upgrade
    from sqlalchemy import text

    db.session.remove()
    downgrade(revision="0009")
    try:
        assert "totp_secret" not in {c["name"] for c in inspect(db.engine).get_columns("users")}
        assert "recovery_codes" not in inspect(db.engine).get_table_names()
        with db.engine.begin() as conn:
            conn.execute(text("INSERT INTO users (email, password_hash, role, sites, active, "
                              "session_version, created_at) VALUES ('old2@example.com', 'x', "
                              "'admin', '[]', :t, 0, CURRENT_TIMESTAMP)"), {"t": True})
    finally:
        upgrade(revision="head")
    with db.engine.connect() as conn:
        row = conn.execute(text("SELECT totp_secret, totp_enabled_at, totp_last_step FROM users "
                                "WHERE email = 'old2@example.com'")).one()
    assert tuple(row) == (None, None, None)
    assert "recovery_codes" in inspect(db.engine).get_table_names()
