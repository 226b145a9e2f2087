"""Issue 18, the rest of the read path: what makes an audited read cheap, each checked against the
real parts. A reading request's statements commit one by one (its audit record durable when its
INSERT returns), prepared statements answer as SQLAlchemy would, on PostgreSQL and on SQLite, and
the JSON provider says what Flask's own would."""
from __future__ import annotations

import json
import uuid
from contextlib import contextmanager
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import psycopg
import pytest
from flask import Flask
from flask.json.provider import DefaultJSONProvider
from hypothesis import given, settings, strategies as st
from sqlalchemy import Column, Integer, MetaData, String, Table, bindparam, func, select, text

from coproduction.db import DB_UNAVAILABLE, Database, Prepared
from coproduction.jsonio import JSONProvider
from harness import PG_URL

metadata = MetaData()
notes = Table("notes", metadata, Column("id", Integer, primary_key=True), Column("owner", String(10)),
              Column("body", String(100)))
BY_OWNER = select(notes.c.id, notes.c.body, func.aggregate_strings(notes.c.body, "|").over().label("all_bodies")) \
    .where(notes.c.owner == bindparam("owner", type_=String)).order_by(notes.c.id)
APPEND = notes.insert().values(owner=bindparam("owner"), body=bindparam("body")).returning(notes.c.id)


@contextmanager
def postgres_database():
    """A Database in a PostgreSQL schema of its own, holding the notes table; dropped afterwards."""
    schema = "readpath_" + uuid.uuid4().hex[:8]
    database = Database(PG_URL, schema=schema)
    try:
        with database.engine.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        metadata.create_all(database.engine)
        yield database
    finally:
        database.drop_schema()
        database.dispose()


@pytest.fixture(params=["postgresql", "sqlite"])
def db(request, tmp_path):
    if request.param == "postgresql":
        with postgres_database() as database:
            yield database
        return
    database = Database(f"sqlite:///{tmp_path / 'read-path.db'}")
    metadata.create_all(database.engine)
    yield database
    database.dispose()


def test_prepared_statements_answer_as_sqlalchemy_does(db):
    """Rows by name, the postcompiled separator rendered, RETURNING, None for nothing found."""
    append, by_owner = Prepared(APPEND), Prepared(BY_OWNER)
    with db.session() as session:
        ids = [append.run(session, {"owner": "ann", "body": body}).id for body in ("tea", "walks")]
        append.run(session, {"owner": "bob", "body": "chess"})
    with db.session() as session:
        expected = session.execute(BY_OWNER, {"owner": "ann"}).all()
        rows = by_owner.all(session, {"owner": "ann"})
        assert [(r.id, r.body, r.all_bodies) for r in rows] == [tuple(r) for r in expected]
        assert [r.id for r in rows] == ids and rows[0].all_bodies == "tea|walks"
        assert by_owner.run(session, {"owner": "nobody"}) is None


def change(subject: str, n: int, days_ago: float, now: datetime) -> dict:
    moment = now - timedelta(days=days_ago)
    event = {"id": str(uuid.uuid4()), "type": "decision.recorded", "source": "/coproduction/decisions",
             "subject": subject, "time": moment.isoformat().replace("+00:00", "Z"), "aggregateid": f"d-{n}",
             "aggregateversion": 1, "data": {"question": f"question {n} \u001e", "outcome": {"chosen_option_label": "yes"}}}
    return {"event_id": event["id"], "type": event["type"], "subject": subject, "event_time": moment,
            "body": json.dumps(event)}


def test_the_standing_read_brings_the_recent_changes_the_consumer_kept(db):
    """The admission summary's changes come with the access decision's one read, as the consumer
    kept them beside the document: the person's own, the newest first, one more than are shown; the
    summary shows its window's and says when there may be more (on both databases)."""
    from types import SimpleNamespace

    from gateway import admission, portfolio, projection
    from gateway.models import change_log, metadata as gateway_tables
    from gateway.policy.decision import STANDING
    gateway_tables.create_all(db.engine)
    now, shown = datetime.now(timezone.utc), portfolio.CHANGES_SHOWN
    rows = ([change("9434765919", n, 40, now) for n in range(3)]
            + [change("9434765919", n, 1, now) for n in range(3, shown + 8)] + [change("9000000009", 0, 1, now)])
    with db.session() as session:
        session.execute(change_log.insert(), rows)
        projection.recompose_many(session, ["9434765919", "9000000009"])

    def standing(subject):
        with db.session() as session:
            return STANDING[(True, True)].run(session, {"subject": subject, "org": "X", "at": now})

    kept = standing("9434765919").recent_changes
    assert len(kept["items"]) == len(kept["at"]) == portfolio.CHANGES_KEPT
    assert [i["ref"] for i in kept["items"]] == [f"d-{n}" for n in range(shown + 7, 6, -1)]  # none of another
    assert kept["items"][0]["summary"] == f"decision recorded: question {shown + 7} \x1e → yes"

    def summary(kept_changes, hidden=frozenset()):
        decision = SimpleNamespace(changes=kept_changes, changes_since=now - timedelta(days=30))
        return admission._recent_changes(decision, set(hidden))

    full = summary(kept)
    assert len(full["items"]) == shown and full["truncated"]
    assert full["items"][0]["ref"] == f"d-{shown + 7}"
    assert summary(kept, hidden={"decisions"})["items"] == []
    with db.session() as session:  # eight of the newest go; the window then ends inside what is kept
        session.execute(change_log.delete().where(change_log.c.event_id.in_([r["event_id"] for r in rows[-9:-1]])))
        projection.recompose_many(session, ["9434765919"])
    fewer = summary(standing("9434765919").recent_changes)
    assert len(fewer["items"]) == shown - 3 and not fewer["truncated"]
    assert {i["ref"] for i in fewer["items"]}.isdisjoint({"d-0", "d-1", "d-2"})  # older than 30 days
    nobody = standing("9000000001")
    assert nobody.document is None and summary(nobody.recent_changes)["items"] == []


def visible_elsewhere(db: Database, body: str) -> bool:
    with db.session() as other:
        return other.execute(select(func.count()).where(notes.c.body == body)).scalar() == 1


def test_a_reading_request_commits_each_statement_as_it_returns():
    """On PostgreSQL a GET's session sends no BEGIN: its audit record is committed, seen by any
    other connection, the moment its INSERT returns; a writing request's work waits for COMMIT."""
    with postgres_database() as db:
        reading = db.open(reading=True)
        Prepared(APPEND).run(reading, {"owner": "ann", "body": "read-record"})
        assert visible_elsewhere(db, "read-record")  # before any commit
        assert reading.connection.driver_connection.autocommit
        reading.commit()
        reading.close()

        writing = db.open()
        Prepared(APPEND).run(writing, {"owner": "ann", "body": "write-record"})
        assert not visible_elsewhere(db, "write-record")
        writing.commit()
        writing.close()
        assert visible_elsewhere(db, "write-record")
        with psycopg.connect(PG_URL) as conn:  # the pool hands the next writer a transactional connection
            assert conn.execute(f'SELECT count(*) FROM "{db.schema}".notes').fetchone()[0] == 2
        again = db.open()
        assert not again.connection.driver_connection.autocommit
        again.close()


def test_a_lost_connection_is_a_database_error_the_request_answers_503_and_the_pool_recovers():
    """The driver's error becomes SQLAlchemy's (DB_UNAVAILABLE: the gateway answers 503 with
    Retry-After), and the pool holds no connection of before the loss: the next request succeeds."""
    with postgres_database() as db:
        spare, lost = db.open(reading=True), db.open(reading=True)  # two pooled connections
        backends = []
        for conn in (spare, lost):
            Prepared(BY_OWNER).all(conn, {"owner": "ann"})
            backends.append(conn.connection.driver_connection.info.backend_pid)
        spare.close()  # back in the pool, its server gone with the other's (as in a restart)
        with psycopg.connect(PG_URL, autocommit=True) as admin:
            for backend in backends:
                admin.execute("SELECT pg_terminate_backend(%s)", (backend,))
        with pytest.raises(DB_UNAVAILABLE):
            Prepared(BY_OWNER).all(lost, {"owner": "ann"})
        lost.close()
        for _ in range(2):  # neither the lost connection nor one opened before it is handed out again
            again = db.open(reading=True)
            assert Prepared(BY_OWNER).all(again, {"owner": "ann"}) == []
            again.close()


JSONABLE = st.recursive(
    st.none() | st.booleans() | st.integers(-(2 ** 70), 2 ** 70) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text() | st.datetimes(timezones=st.just(timezone.utc)) | st.dates() | st.uuids()
    | st.decimals(allow_nan=False, allow_infinity=False, places=2),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text() | st.integers(0, 9), children, max_size=4),
    max_leaves=20)


def providers():
    app = Flask("read-path")
    return JSONProvider(app), DefaultJSONProvider(app), app


@settings(max_examples=300, deadline=None)
@given(JSONABLE)
def test_the_json_provider_says_what_flasks_own_does(value):
    ours, flasks, app = providers()
    flasks.sort_keys = False
    assert json.loads(ours.dumps(value)) == json.loads(flasks.dumps(value))
    with app.app_context():
        assert json.loads(ours.response(value).get_data()) == json.loads(flasks.response(value).get_data())


def test_the_json_provider_keeps_flasks_forms():
    ours, _flasks, app = providers()
    moment = datetime(2026, 12, 1, 15, 0, tzinfo=timezone.utc)
    assert json.loads(ours.dumps({"at": moment, "on": date(2026, 12, 1), "pence": Decimal("1.50")})) == \
        {"at": "Tue, 01 Dec 2026 15:00:00 GMT", "on": "Tue, 01 Dec 2026 00:00:00 GMT", "pence": "1.50"}
    assert ours.dumps({1: 2 ** 80}) == '{"1": 1208925819614629174706176}'  # wider than orjson: the standard encoder
    assert ours.dumps(["é"]) in ('["é"]', '["\\u00e9"]')
    app.debug = True
    with app.app_context():
        assert ours.response({"a": 1}).get_data(as_text=True) == '{\n  "a": 1\n}\n'


def test_a_portfolio_seen_whole_is_its_stored_text_saying_what_for_role_would(db):
    """A caller who may see every initiative gets the document's stored JSON text, never parsed:
    the same JSON as for_role makes of the parsed document (on both databases)."""
    from gateway import portfolio, projection
    from gateway.models import metadata as gateway_tables
    from gateway.policy.decision import STANDING
    gateway_tables.create_all(db.engine)
    document = {"nhs_number": "9434765919", "priorities": [{"text": "Café \u2014 \"walks\"", "rank": 1,
                                                             "nested": {"a": [1, 2.5, None, True]}}],
                "plan": None, "timeline": [], "freshness": {"plans": None}, "big": 2 ** 70}
    with db.session() as session:
        projection._store(session, [("9434765919", document, {"at": [], "items": []})])
    with db.session() as session:
        standing = STANDING[(True, False)].run(session, {"subject": "9434765919", "org": "X",
                                                         "at": datetime.now(timezone.utc)})
    assert isinstance(standing.document, str)
    whole = json.loads(portfolio.whole(standing.document))
    assert whole == portfolio.for_role(json.loads(standing.document), set()) == dict(document, withheld=[])
    assert json.loads(portfolio.whole(" {} ")) == portfolio.for_role({}, set())
