"""HTTP routes of the decisions service: requests in, representations out; the commands are in
``handlers.py``, the rules in ``domain.py``."""
from __future__ import annotations

import flask_smorest
from flask import Response
from sqlalchemy import select

from coproduction.http import ctx, with_etag
from coproduction.idempotency import create_once, created
from coproduction.paging import keyset_page, where_given
from coproduction.routes import action_routes, endpoint

from . import handlers
from .handlers import DECISIONS, decision_json
from .models import Decision, idempotency_keys
from .schemas import (DecisionCreateSchema, DecisionListQuery, DecisionListSchema, DecisionPatchSchema,
                      DecisionSchema, DeferSchema, FollowUpSchema, RecordSchema, SupersedeSchema)

bp = flask_smorest.Blueprint("decisions", __name__, url_prefix="/v1/decisions",
                             description="Shared decision-making (NICE NG197)")


@endpoint(bp, "", "decisions:write", DecisionSchema, method="POST", body=DecisionCreateSchema, status=201)
def open_decision(body):
    """Open a shared decision (optionally superseding an earlier one of the same person)."""
    return create_once(idempotency_keys, created(handlers.open_decision, body, decision_json, "/v1/decisions"))


@endpoint(bp, "", "decisions:read", DecisionListSchema, body=DecisionListQuery, location="query")
def list_decisions(query):
    """A person's decisions, oldest first, a page at a time (``next_cursor`` until null)."""
    stmt = where_given(select(Decision), Decision, query, "nhs_number", "status", "setting", "encounter_id")
    with ctx().db.session() as session:
        rows, next_cursor = keyset_page(session, stmt, Decision, query["limit"], query.get("cursor"))
        return {"items": [decision_json(d) for d in rows], "next_cursor": next_cursor}


@endpoint(bp, "/<decision_id>", "decisions:read", DecisionSchema)
def get_decision(decision_id):
    with ctx().db.session() as session:
        return with_etag(decision_json(DECISIONS.load(session, decision_id)))


def _command(command, decision_id: str, body: dict) -> Response:
    with ctx().db.session() as session:
        decision, _event = command(session, decision_id, body)
        return with_etag(decision_json(decision))


@endpoint(bp, "/<decision_id>", "decisions:write", DecisionSchema, method="PATCH", body=DecisionPatchSchema)
def change_decision(body, decision_id):
    """Change an opened or deferred decision (a recorded one is kept as made: supersede it)."""
    return _command(handlers.change, decision_id, body)


def _decide(action: str, body: dict, decision_id: str) -> Response:
    return _command(getattr(handlers, action), decision_id, body)


action_routes(bp, "/<decision_id>/{action}", "decisions:write", DecisionSchema, "{action}_decision", _decide, [
    ("record", RecordSchema, "Record the option chosen together, the person's reason and the clinician."),
    ("defer", DeferSchema, "Put the decision off (the person wants time, more information, or someone with them)."),
])


@endpoint(bp, "/<decision_id>/follow-up", "decisions:write", DecisionSchema, method="POST",
          body=FollowUpSchema)
def follow_up(body, decision_id):
    """Record the follow-up: summary given, letter sent (to whom), when to revisit."""
    return _command(handlers.follow_up, decision_id, body)


@endpoint(bp, "/<decision_id>/supersede", "decisions:write", DecisionSchema, method="POST",
          body=SupersedeSchema, status=201)
def supersede_decision(body, decision_id):
    """Revisit a decision: a new decision (201) replaces this one, which becomes superseded.

    Fields not sent are carried over from the old decision (its options keep their ids).
    """
    with ctx().db.session() as session:
        new, _event = handlers.supersede(session, decision_id, body)
        payload, location = decision_json(new), f"/v1/decisions/{new.id}"
    return with_etag(payload, 201, {"Location": location})
