"""Schema migrations with Alembic, one history per part (its package's ``migrations/``).

``coproduction migrate SERVICE`` brings a database up to date; ``coproduction serve`` runs it in the
master process before its workers start. ``coproduction makemigration SERVICE -m "..."`` writes a
new revision from the difference between the models and an up-to-date database.
"""
from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text

from .config import Settings
from .db import Database
from .service import load

MIGRATION_LOCK = 7_240_000


def parts(service: str) -> tuple[Database, object, Path]:
    spec = load(service)
    return spec.database(Settings.from_env(service)), spec.metadata, spec.migrations


def _config(versions: Path, connection, metadata) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).resolve().parent / "migrations"))
    cfg.set_main_option("version_locations", str(versions))
    cfg.set_main_option("path_separator", "os")
    cfg.attributes["connection"] = connection
    cfg.attributes["metadata"] = metadata
    return cfg


def upgrade(service: str, revision: str = "head") -> None:
    db, metadata, versions = parts(service)
    try:
        with db.engine.begin() as conn:
            if db.is_postgres:  # processes starting together must not race on the same migration
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK})
                if db.schema:
                    conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{db.schema}"'))
            command.upgrade(_config(versions, conn, metadata), revision)
    finally:
        db.dispose()


class NotMigrated(RuntimeError):
    """A process told not to migrate (``MIGRATE_ON_START=0``) found its database behind its code."""


def check_current(service: str) -> None:
    """Raise NotMigrated unless the database is at every head of the part's history."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    db, metadata, versions = parts(service)
    try:
        with db.engine.connect() as conn:
            cfg = _config(versions, conn, metadata)
            heads = set(ScriptDirectory.from_config(cfg).get_heads())
            current = set(MigrationContext.configure(conn).get_current_heads())
    finally:
        db.dispose()
    if current != heads:
        raise NotMigrated(f"the {service} database is at {sorted(current) or 'nothing'}, its code needs "
                          f"{sorted(heads)}: run `coproduction migrate {service}` first")


def make_revision(service: str, message: str) -> None:
    db, metadata, versions = parts(service)
    versions.mkdir(parents=True, exist_ok=True)
    try:
        with db.engine.begin() as conn:
            if db.is_postgres and db.schema:
                conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{db.schema}"'))
            cfg = _config(versions, conn, metadata)
            command.upgrade(cfg, "head")
            command.revision(cfg, message=message, autogenerate=True)
    finally:
        db.dispose()
