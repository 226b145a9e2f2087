"""Issue 8: a lost gateway database is a nuisance, not a loss: rebuild from the services' feeds."""
from __future__ import annotations

import subprocess
import sys
import threading

from sqlalchemy import func, select, text

from calls import if_match
from coproduction.nhs_number import with_check_digit
from coproduction.service import load
from harness import ROOT, wait_for
from stored import count_rows

PEOPLE = [with_check_digit(f"94347{i:04d}") for i in range(40)]
PEOPLE = [p for p in PEOPLE if p][:12]


def portfolio(platform, number):
    doc = platform.call("admin", "GET", f"/v1/people/{number}/portfolio").json()
    for entry in (doc.get("freshness") or {}).values():
        if entry:
            entry.pop("applied_at", None)  # when the gateway applied it: the one thing a rebuild changes
    return doc


def counts(platform):
    from gateway.models import change_log, inbox
    db = platform.database("gateway")
    with db.session() as s:
        out = (s.execute(select(func.count()).select_from(change_log)).scalar_one(),
               s.execute(select(func.count(func.distinct(change_log.c.event_id)))).scalar_one(),
               s.execute(select(func.count()).select_from(inbox)).scalar_one())
    db.dispose()
    return out


def outbox_total(platform, services):
    return sum(count_rows(platform, name, load(name).outbox) for name in services)


def write_plans(platform, numbers, label):
    for number in numbers:
        r = platform.call("gp", "POST", "/v1/plans", json={
            "nhs_number": number, "priorities": [{"text": f"{label} for {number}", "category": "other", "rank": 1}]})
        assert r.status_code == 201, r.text
        r = platform.call("gp", "POST", f"/v1/plans/{r.json()['id']}/agree", headers=if_match(1),
                          json={"agreed_by": "Dr B", "person_agreed": True})
        assert r.status_code == 200, r.text


def test_rebuild_after_losing_the_gateway_database(make_platform):
    services = ("plans",)
    platform = make_platform(services=services).start()
    write_plans(platform, PEOPLE, "Get back to the allotment")
    wait_for(lambda: counts(platform)[0] == outbox_total(platform, services), message="everything projected")
    before = {n: portfolio(platform, n) for n in PEOPLE}

    db = platform.database("gateway")  # lose the projection: empty every read-model table
    with db.session() as s:
        for table in ("portfolios", "aggregates", "change_log", "inbox"):
            s.execute(text(f"DELETE FROM {table}"))
    db.dispose()
    assert platform.call("admin", "GET", f"/v1/people/{PEOPLE[0]}/portfolio").status_code == 404

    late = [with_check_digit(f"95012{i:04d}") for i in range(30)]
    late = [p for p in late if p][:8]
    writer = threading.Thread(target=write_plans, args=(platform, late, "Swim again"))
    writer.start()  # events keep arriving, through the consumer, while the rebuild runs
    result = subprocess.run([sys.executable, "-m", "bootstrap.cli", "rebuild", "--workers", "2", *services],
                            env=dict(platform.env), cwd=ROOT, capture_output=True, text=True, timeout=300)
    writer.join()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "rebuilt" in result.stdout and "plans" in result.stderr  # the progress lines

    total = outbox_total(platform, services)
    wait_for(lambda: counts(platform)[0] == total, message="the late events applied too")
    logged, distinct, inboxed = counts(platform)
    assert logged == distinct == inboxed == total  # nothing lost, nothing doubled
    after = {n: portfolio(platform, n) for n in PEOPLE}
    assert after == before
    for number in late:
        doc = platform.portfolio_shows(number, lambda d: d["plan"] and d["plan"]["status"] == "active")
        assert doc["priorities"][0]["text"] == f"Swim again for {number}"
        assert len(doc["timeline"]) == 2


def test_rebuild_of_a_lost_gateway_database_from_all_four_services(make_platform, tmp_path):
    """The demo person (plans, budgets, decisions, groups) and others; the gateway's whole database
    is dropped; `coproduction rebuild` gives the same portfolios, and what arrives meanwhile is
    neither lost nor doubled."""
    import json as _json
    from bootstrap.cli import main
    from coproduction.web import migrate
    services = ("plans", "budgets", "decisions", "groups")
    platform = make_platform(services=services).start()
    token_file = tmp_path / "tokens.json"
    token_file.write_text(_json.dumps(platform.tokens))
    assert main(["demo", "--url", platform.url, "--token-file", str(token_file), "--timeout", "30"]) == 0
    write_plans(platform, PEOPLE[:4], "Sleep through the night")
    everyone = ["9434765919", *PEOPLE[:4]]
    wait_for(lambda: counts(platform)[0] == outbox_total(platform, services), message="everything projected")
    before = {n: portfolio(platform, n) for n in everyone}
    assert set(before["9434765919"]["freshness"]) == set(services)

    platform.stop_thread("gateway-consumer")
    gateway_db = platform.database("gateway")
    gateway_db.drop_schema()  # the gateway's database is gone: clients, audit, projection, all of it
    migrate("gateway")
    platform.create_clients()
    late = [p for p in (with_check_digit(f"95112{i:04d}") for i in range(20)) if p][:6]
    writer = threading.Thread(target=write_plans, args=(platform, late, "Swim again"))
    writer.start()  # the services keep taking writes; their events wait in the gateway's queue
    result = subprocess.run([sys.executable, "-m", "bootstrap.cli", "rebuild", "--workers", "1"], env=dict(platform.env),
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    writer.join()
    assert result.returncode == 0, result.stdout + result.stderr
    platform.start_consumer()  # resumes from the queue: whatever the rebuild already applied is skipped

    total = outbox_total(platform, services)
    wait_for(lambda: counts(platform)[0] == total, timeout=60, message="the late events applied too")
    logged, distinct, inboxed = counts(platform)
    assert logged == distinct == inboxed == total
    after = {n: portfolio(platform, n) for n in everyone}
    assert after == before
    for number in late:
        platform.portfolio_shows(number, lambda d: d["plan"] and d["plan"]["status"] == "active")


def test_two_transactions_projecting_one_aggregate_neither_fails_nor_goes_back():
    """A parallel rebuild's ranges (and the consumer beside them) can hold events of one aggregate:
    both read it as absent, both insert. The second waits for the first, then keeps the newer
    version instead of failing on the key (seen in `make bench`'s rebuild of 512,200 events), and an
    older event arriving last changes nothing."""
    import uuid

    import psycopg

    from coproduction.db import Database
    import services.plans.events  # noqa: F401 - registers the plan events' schemas
    from coproduction.events import make_event
    from gateway.models import aggregates, metadata
    from gateway.projection import apply_many
    from gateway.rebuild import wipe
    from harness import PG_URL
    from sqlalchemy.orm import Session

    def plan_event(version: int, status: str) -> dict:
        return make_event(source="plans", type="plan.created", subject=PEOPLE[0], aggregate_id=plan_id,
                          aggregate_version=version, data={
                              "plan_id": plan_id, "status": status, "conditions": [], "priorities": [], "goals": [],
                              "actions": [], "next_review_date": None, "changed_by": {}})

    plan_id, schema = str(uuid.uuid4()), "projection_" + uuid.uuid4().hex[:8]
    db = Database(PG_URL, schema=schema)
    try:
        with db.engine.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        metadata.create_all(db.engine)
        with db.session() as session:  # projected once, then wiped as a rebuild begins (its index of
            apply_many(session, [plan_event(1, "draft")], recompose_people=False)  # records is kept)
        wipe(db)
        first = Session(db.engine)
        first.begin()
        apply_many(first, [plan_event(1, "draft")], recompose_people=False)  # inserted, not committed
        failures, backend = [], []

        def second():
            try:
                with db.session() as session:
                    backend.append(session.connection().connection.driver_connection.info.backend_pid)
                    apply_many(session, [plan_event(2, "agreed")], recompose_people=False)
            except Exception as exc:  # noqa: BLE001 - the assertion below names it
                failures.append(exc)
        racer = threading.Thread(target=second)
        racer.start()
        try:
            with psycopg.connect(PG_URL, autocommit=True) as watch:  # the second waits on the first's rows
                wait_for(lambda: backend and watch.execute("SELECT count(*) FROM pg_locks WHERE NOT granted AND pid = %s",
                                                           (backend[0],)).fetchone()[0] > 0,
                         timeout=20, message="the second transaction waiting on the first's")
            first.commit()
        finally:
            first.close()
            racer.join(20)
        assert not failures, failures
        with db.session() as session:
            apply_many(session, [plan_event(1, "draft")], recompose_people=False)  # older, and late
            row = session.execute(select(aggregates.c.version, aggregates.c.state)).one()
        assert row.version == 2 and row.state["status"] == "agreed"
    finally:
        db.drop_schema()
        db.dispose()
