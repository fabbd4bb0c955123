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
