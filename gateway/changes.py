"""The change feed: every event the gateway applied, in the order it applied them, from a cursor.

``GET /v1/changes?after=&types=plan.*&limit=`` and ``GET /v1/people/{nhs}/changes?after=&limit=``
read the ``change_log`` table. Its ``position`` is assigned under a lock held until commit
(``gateway/projection.py``), so positions become visible in order: a reader that has seen position
N will never later find a new row below N. A page is read up to the head position observed before
it, so a client that keeps the ``next_cursor`` it was given sees every change exactly once, in
order, while writes continue.

The cursor is opaque to clients: a position cursor of coproduction/paging.py. Access is checked per
event (gateway/policy/): a change is left out (and counted in ``withheld``; the cursor still moves
past it) unless the caller's organisation has a care relationship with its person, the caller holds
the read scope of its initiative, and the person's sharing preferences do not withhold it from the
caller's role. Every person whose changes a page shows gets an audit record.
"""
from __future__ import annotations

import json
import re

import flask_smorest
import marshmallow as ma
from flask import jsonify
from sqlalchemy import func, or_, select

from coproduction.events import service_of
from coproduction.http import Problem, ctx
from coproduction.paging import invalid_cursor, position_cursor, read_position_cursor

from . import policy
from .models import change_log
from .security import also_audit

TYPE_PATTERN = re.compile(r"^(\*|[a-z]+\.\*|[a-z]+\.[a-z][a-z-]*)$")

bp = flask_smorest.Blueprint("changes", __name__, url_prefix="/v1",
                             description="The change feed: every change, in order, from a cursor (GP sync)")


def _after(cursor: str | None) -> int:
    if not cursor:
        return 0
    position = read_position_cursor(cursor)
    if position is None:
        raise invalid_cursor("after", "Not a cursor this feed gave out (use the next_cursor of a page).")
    return position


def _types(value: str | None) -> list[str]:
    if not value:
        return []
    patterns = [t.strip() for t in value.split(",") if t.strip()]
    bad = [t for t in patterns if not TYPE_PATTERN.match(t)]
    if bad or len(patterns) > 20:
        raise Problem(422, "Unprocessable Content", "Some fields are not valid: types",
                      errors={"types": [f"Each type is a name like plan.revised or a family like plan.*; "
                                        f"not valid: {', '.join(bad) or 'more than 20 patterns'}."]})
    return patterns


class ChangesQuery(ma.Schema):
    after = ma.fields.String(load_default=None, validate=ma.validate.Length(max=100),
                             metadata={"description": "The next_cursor of the previous page; absent: from the start"})
    types = ma.fields.String(load_default=None, validate=ma.validate.Length(max=500),
                             metadata={"description": "Comma-separated types or families, e.g. plan.*,budget.changed"})
    limit = ma.fields.Integer(load_default=100, validate=ma.validate.Range(min=1, max=1000))


class ChangePageSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Dict(), metadata={"description": "CloudEvents, in cursor order"})
    next_cursor = ma.fields.String(metadata={"description": "Where to continue from; always present"})
    has_more = ma.fields.Boolean(metadata={"description": "True when more changes are already waiting"})
    withheld = ma.fields.Integer(metadata={"description": "changes of this page the caller may not see, left out"})


def page(query: dict, who, subject: str | None = None) -> dict:
    after = _after(query["after"])
    patterns = _types(query["types"])
    limit = query["limit"]
    with ctx().db.session() as session:
        # Everything at or below the head was committed before this read began (positions become
        # visible in order), so reading up to it and moving the cursor there can never skip one.
        head = session.execute(select(func.max(change_log.c.position))).scalar_one_or_none() or 0
        if head <= after:
            return {"items": [], "next_cursor": position_cursor(after), "has_more": False, "withheld": 0}
        stmt = select(change_log.c.position, change_log.c.subject, change_log.c.body).where(
            change_log.c.position > after, change_log.c.position <= head)
        if subject is not None:
            stmt = stmt.where(change_log.c.subject == subject)
        if patterns and "*" not in patterns:
            exact = [p for p in patterns if not p.endswith(".*")]
            families = [p[:-1] for p in patterns if p.endswith(".*")]
            wanted = [change_log.c.type.startswith(f, autoescape=True) for f in families]
            if exact:
                wanted.append(change_log.c.type.in_(exact))
            stmt = stmt.where(or_(*wanted))
        rows = session.execute(stmt.order_by(change_log.c.position).limit(limit + 1)).all()
        has_more = len(rows) > limit
        rows = rows[:limit]
        events = [json.loads(row.body) for row in rows]
        if subject is None:  # across people: relationship, scope and preferences, item by item
            seen = policy.Visibility.of(session, who, {e["subject"] for e in events})
            items = [e for e in events if seen.allows(e["subject"], _initiative(e))]
            hidden = seen.hidden_ids(session, {e["subject"] for e in items})
            items = [policy.scrub_value(e, hidden[e["subject"]]) if hidden[e["subject"]] else e for e in items]
            also_audit(e["subject"] for e in items)  # each person shown is audited by name
        else:  # one person, already decided: scope and preferences per event type
            decision = policy.current()
            items = [e for e in events if _initiative(e) not in decision.unseen]
    next_position = rows[-1].position if has_more else head
    return {"items": items, "next_cursor": position_cursor(next_position), "has_more": has_more,
            "withheld": len(events) - len(items)}


def _initiative(event: dict) -> str:
    return service_of(event)


@bp.route("/changes")
@bp.arguments(ChangesQuery, location="query")
@bp.response(200, ChangePageSchema)
def all_changes(query):
    """Every change across people, oldest first, from ``after`` (scope portfolio:read): of the people
    the caller's organisation has a care relationship with, of the types its scopes may read, and not
    withheld by the person's sharing preferences; ``withheld`` counts the rest of the page.

    Keep ``next_cursor`` and send it back as ``after``: each change is delivered exactly once, in
    order. ``has_more`` says whether to ask again at once or after a pause.
    """
    return jsonify(page(query, policy.current().caller))


@bp.route("/people/<nhs_number>/changes")
@bp.arguments(ChangesQuery, location="query")
@bp.response(200, ChangePageSchema)
def person_changes(query, nhs_number):
    """One person's changes, oldest first, from ``after`` (audited; consent applied)."""
    decision = policy.current()
    return jsonify(page(query, decision.caller, subject=decision.subject))
