"""``GET /v1/events?after=N``: a service's own event log, read from its outbox, for rebuilds."""
from __future__ import annotations

import flask_smorest
import marshmallow as ma
from flask import jsonify

from .auth import requires
from .http import ctx
from sqlalchemy import func, select

from .outbox import read_feed


class FeedQuery(ma.Schema):
    # a position is a BIGINT: past 2**63 - 1 the database would refuse the query itself (a 500)
    after = ma.fields.Integer(load_default=0, validate=ma.validate.Range(min=0, max=2**63 - 1))
    limit = ma.fields.Integer(load_default=500, validate=ma.validate.Range(min=1, max=5000))


class FeedItem(ma.Schema):
    position = ma.fields.Integer(required=True)
    event = ma.fields.Dict(required=True, metadata={"description": "The CloudEvent as published."})


class FeedPage(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(FeedItem), required=True)
    next_after = ma.fields.Integer(required=True)
    last_position = ma.fields.Integer(required=True)


def feed_blueprint() -> flask_smorest.Blueprint:
    bp = flask_smorest.Blueprint("events", __name__, url_prefix="/v1/events",
                                 description="The service's event log (its outbox), in order.")

    @bp.route("")
    @requires("admin")
    @bp.arguments(FeedQuery, location="query")
    @bp.alt_response(200, schema=FeedPage, description="A page of the log, oldest first.")
    def events(query):
        service = ctx()
        with service.db.session() as session:
            table = service.tables["outbox"]
            items = read_feed(session, table, query["after"], query["limit"])
            last = session.execute(select(func.max(table.c.id))).scalar_one() or 0
        next_after = items[-1]["position"] if items else query["after"]
        return jsonify(items=items, next_after=next_after, last_position=last)

    return bp
