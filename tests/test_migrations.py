"""Alembic migrations: each service's history builds its schema, and the models never drift from it."""
from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from coproduction.migrate import parts, upgrade
from harness import Platform

SERVICES = ("gateway", "plans", "budgets", "decisions", "groups")


@pytest.mark.parametrize("database", ["postgres", "sqlite"])
def test_migrations_build_every_schema_and_match_the_models(tmp_path, database):
    platform = Platform(tmp_path, services=SERVICES[1:], database=database)
    try:
        for service in SERVICES:
            upgrade(service)
            upgrade(service)  # a second run has nothing to do
            db, metadata, _versions = parts(service)
            with db.engine.connect() as conn:
                tables = set(inspect(conn).get_table_names())
                assert set(metadata.tables) <= tables, (service, set(metadata.tables) - tables)
                assert "alembic_version" in tables
                drift = compare_metadata(MigrationContext.configure(conn), metadata)
            db.dispose()
            assert drift == [], f"{service}: models differ from migrations; run coproduction makemigration {service}"
    finally:
        platform.stop()


def test_a_process_told_not_to_migrate_refuses_a_database_behind_its_code(tmp_path, monkeypatch):
    """compose's processes run with MIGRATE_ON_START=0 behind a one-shot migrate job."""
    import pytest
    from coproduction.migrate import NotMigrated, upgrade
    from coproduction.web import migrate
    for name in ("DATABASE_URL", "PLANS_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("VAR_DIR", str(tmp_path))
    monkeypatch.setenv("MIGRATE_ON_START", "0")
    with pytest.raises(NotMigrated, match="coproduction migrate plans"):
        migrate("plans")
    upgrade("plans")
    migrate("plans")  # at head: starts
