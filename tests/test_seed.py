"""`coproduction seed`: generated people travel the same road as real ones, into the portfolio."""
from __future__ import annotations

from sqlalchemy import func, select

from coproduction.events import parse_event
from coproduction.nhs_number import is_valid
from bootstrap.seed import nhs_numbers, seed
from gateway.projection import read
from harness import wait_for

SERVICES = ("plans", "budgets", "decisions", "groups")


def test_generated_nhs_numbers_are_valid_distinct_and_resumable():
    numbers = nhs_numbers(2000)
    assert all(is_valid(n) for n in numbers) and len(set(numbers)) == 2000
    assert nhs_numbers(5, start=1995) == numbers[1995:]


def _outbox_rows(platform, service):
    from coproduction.service import load
    spec = load(service)
    db = platform.database(service)
    with db.session() as session:
        rows = session.execute(select(spec.outbox.c.body, spec.outbox.c.sent_at)).all()
    db.dispose()
    return rows


def test_seeded_people_reach_the_portfolio_through_relays_and_consumer(make_platform):
    platform = make_platform(services=SERVICES)
    platform.migrate()
    result = seed(13, detailed=3, progress=lambda _line: None)
    assert result["detailed"] == 3 and result["bulk"] == 10
    people = nhs_numbers(13)

    # every event in every outbox is a valid envelope the gateway's own readers accept
    counts = {}
    for service in SERVICES:
        rows = _outbox_rows(platform, service)
        counts[service] = len(rows)
        for row in rows:
            read(parse_event(row.body))
            assert row.sent_at is None  # not published yet: the relays will
    assert counts["plans"] == 3 * 2 + 10  # detailed: created + agreed; bulk: created
    assert counts["budgets"] == 3 * 3 and counts["decisions"] == 3 * 2 and counts["groups"] == 3 * 2

    platform.start()
    detailed = platform.portfolio_shows(people[0], lambda d: d["plan"] and d["budget"] and d["decisions"]
                                        and d["groups"], timeout=30)
    assert detailed["plan"]["status"] == "active" and detailed["budget"]["status"] == "agreed"
    assert detailed["decisions"][0]["status"] == "recorded"
    assert {s["service"] for p in detailed["priorities"] for s in p["sources"]} == set(SERVICES)
    bulk = platform.portfolio_shows(people[-1], lambda d: d["plan"] is not None, timeout=30)
    assert bulk["plan"]["status"] == "draft" and bulk["budget"] is None
    assert bulk["priorities"][0]["text"] == "Walk my grandson to school"

    from gateway.models import portfolios
    db = platform.database("gateway")

    def all_projected():
        with db.session() as session:
            return session.execute(select(func.count()).select_from(portfolios)).scalar_one() == 13
    wait_for(all_projected, timeout=30, message="all 13 seeded people in the projection")
    db.dispose()


def test_published_bulk_people_are_marked_sent_and_a_second_run_adds_new_people(make_platform):
    platform = make_platform(services=("plans",))
    platform.migrate()
    seed(4, detailed=0, published=True, batch=1, jobs=2, services=["plans"], progress=lambda _line: None)
    seed(4, detailed=0, start=4, batch=3, services=["plans"], progress=lambda _line: None)
    rows = _outbox_rows(platform, "plans")
    assert len(rows) == 8
    assert sum(1 for r in rows if r.sent_at is not None) == 4
    subjects = {parse_event(r.body)["subject"] for r in rows}
    assert subjects == set(nhs_numbers(8))


def test_side_by_side_processes_write_every_person_once(make_platform):
    platform = make_platform(services=SERVICES)
    platform.migrate()
    seed(46, detailed=40, jobs=2, batch=2, progress=lambda _line: None)
    rows = _outbox_rows(platform, "plans")
    subjects = [parse_event(r.body)["subject"] for r in rows]
    assert len(rows) == 40 * 2 + 6 and set(subjects) == set(nhs_numbers(46))
    assert len(_outbox_rows(platform, "groups")) == 40 * 2
