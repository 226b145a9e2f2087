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


@pytest.mark.parametrize("database", ["postgres", "sqlite"])
def test_portfolios_migrated_keep_the_recent_changes_a_rebuild_would(tmp_path, database):
    """The revision that keeps each portfolio's recent changes fills them in from the change log."""
    import json
    import uuid
    from datetime import datetime, timezone
    from sqlalchemy import text
    from gateway import portfolio, projection
    platform = Platform(tmp_path, services=(), database=database)
    try:
        upgrade("gateway", "e1f06c19b605")
        db, _metadata, _versions = parts("gateway")
        at = datetime(2026, 11, 30, 9, 0, tzinfo=timezone.utc)
        people = [f"94347659{n:02d}" for n in range(3)]
        with db.engine.begin() as conn:
            for person in people:
                conn.execute(text("INSERT INTO portfolios (nhs_number, document, updated_at) VALUES (:n, :d, :at)"),
                             {"n": person, "d": json.dumps({"nhs_number": person}), "at": at})
            for n in range(5):
                event = {"id": str(uuid.uuid4()), "type": "group.enrolled", "source": "/coproduction/groups",
                         "subject": people[0], "time": f"2026-11-30T09:0{n}:00Z", "aggregateid": f"g-{n}",
                         "aggregateversion": 1, "data": {"title": f"course {n}"}}
                conn.execute(text("INSERT INTO change_log (event_id, type, subject, event_time, body) "
                                  "VALUES (:id, :type, :subject, :t, :body)"),
                             {"id": event["id"], "type": event["type"], "subject": people[0],
                              "t": at.replace(minute=n), "body": json.dumps(event)})
        upgrade("gateway")
        with db.engine.connect() as conn:
            kept = dict(conn.execute(text("SELECT nhs_number, recent_changes FROM portfolios")).all())
            expected = {n: portfolio.recent_changes(changes) for n, changes in projection.newest_changes(conn, people).items()}
        db.dispose()
        kept = {n: json.loads(v) if isinstance(v, str) else v for n, v in kept.items()}
        assert kept == expected
        assert [i["summary"] for i in kept[people[0]]["items"]] == [f"course enrolled: course {n}" for n in range(4, -1, -1)]
        assert kept[people[1]] == {"at": [], "items": []}
    finally:
        platform.stop()
