"""Care relationships (legitimate relationships): who is caring for a person, so may open their record.

Held relationships come from the records an organisation creates (gateway/subjects.py): the GP
practice holding the plan, the social care organisation holding the budget, the course provider
with the person's place. Declared ones are made here, by the organisation itself, audited and
time-limited: a hospital declares an admission; in an emergency a clinical organisation declares
emergency access ("break glass"), which needs a reason, flags every access made under it and is
listed for review by the person's GP practice and by administrators.
"""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import flask_smorest
import marshmallow as ma
from sqlalchemy import and_, func, or_, select

from coproduction.events import iso, now
from coproduction.http import Problem, ctx

from . import policy
from .api import nhs_path
from .models import audit_log, care_relationships

#: kind -> (roles that may declare it, default hours, longest hours)
DECLARED = {
    "admission": (("hospital",), 72, 24 * 30),
    policy.EMERGENCY: (("hospital", "gp", "social_care"), 4, 12),
}

bp = flask_smorest.Blueprint("relationships", __name__, url_prefix="/v1/people",
                             description="Care relationships: who may open a person's record, and why")
review_bp = flask_smorest.Blueprint("relationships-review", __name__, url_prefix="/v1/relationships",
                                    description="Self-claimed relationships and emergency access, for review")


class DeclareSchema(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    kind = ma.fields.String(required=True, validate=ma.validate.OneOf(tuple(DECLARED)))
    reason = ma.fields.String(required=True, validate=ma.validate.Length(min=10, max=500),
                              metadata={"description": "why the organisation needs the record, in words"})
    encounter_id = ma.fields.String(load_default=None, allow_none=True, validate=ma.validate.Length(min=1, max=100),
                                    metadata={"description": "the admission's encounter id (required for an admission)"})
    hours = ma.fields.Integer(load_default=None, allow_none=True, validate=ma.validate.Range(min=1, max=24 * 30),
                              metadata={"description": "how long it lasts (admission: 72 by default, at most "
                                                       "720; emergency: 4, at most 12)"})

    @ma.validates_schema
    def _encounter(self, data, **kwargs):
        if data.get("kind") == "admission" and not data.get("encounter_id"):
            raise ma.ValidationError("An admission names its encounter id.", "encounter_id")
        longest = DECLARED.get(data.get("kind"), (None, None, 24 * 30))[2]
        if data.get("hours") and data["hours"] > longest:
            raise ma.ValidationError(f"At most {longest} hours for this kind.", "hours")


class RelationshipSchema(ma.Schema):
    id = ma.fields.String()
    nhs_number = ma.fields.String()
    org = ma.fields.String()
    kind = ma.fields.String(metadata={"description": "plan | budget | course | decision | admission | emergency"})
    source = ma.fields.String(metadata={"description": "event | create (a record it holds) | declared"})
    role = ma.fields.String(allow_none=True)
    client_name = ma.fields.String(allow_none=True)
    encounter_id = ma.fields.String(allow_none=True)
    reason = ma.fields.String(allow_none=True)
    started_at = ma.fields.String()
    expires_at = ma.fields.String(allow_none=True)
    ended_at = ma.fields.String(allow_none=True)
    active = ma.fields.Boolean()


class ListSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(RelationshipSchema))


class ReviewQuery(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    kind = ma.fields.String(load_default=None, validate=ma.validate.OneOf(tuple(DECLARED)))
    limit = ma.fields.Integer(load_default=100, validate=ma.validate.Range(min=1, max=500))
    before = ma.fields.String(load_default=None, validate=ma.validate.Length(max=40),
                              metadata={"description": "the next_cursor of the previous page"})


class ReviewSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Dict())
    next_cursor = ma.fields.String(allow_none=True)


def to_json(row, at=None) -> dict:
    at = at or now()
    expires = row["expires_at"]
    if expires is not None and expires.tzinfo is None:  # SQLite gives naive UTC times back
        expires = expires.replace(tzinfo=timezone.utc)
    active = row["ended_at"] is None and (expires is None or expires > at)
    return {"id": row["id"], "nhs_number": row["nhs_number"], "org": row["org"], "kind": row["kind"],
            "source": row["source"], "role": row["role"], "client_name": row["client_name"],
            "encounter_id": row["encounter_id"], "reason": row["reason"], "started_at": iso(row["started_at"]),
            "expires_at": iso(row["expires_at"]) if row["expires_at"] else None,
            "ended_at": iso(row["ended_at"]) if row["ended_at"] else None, "active": active}


@bp.route("/<nhs_number>/relationships", methods=["POST"], parameters=nhs_path())
@bp.arguments(DeclareSchema)
@bp.response(201, RelationshipSchema)
def declare(body, nhs_number):
    """Declare an admission (hospitals) or emergency access: self-claimed, time-limited, audited."""
    decision = policy.current()
    who = decision.caller
    roles, default_hours, _longest = DECLARED[body["kind"]]
    if who.role not in roles:
        raise Problem(403, "Forbidden", f"A {body['kind']} relationship is declared by "
                      f"{' or '.join(r.replace('_', ' ') for r in roles)} organisations.")
    at = now()
    row = dict(id=str(uuid.uuid4()), nhs_number=decision.subject, org=who.org, kind=body["kind"],
               source="declared", role=who.role, client_id=who.client_id, client_name=who.name,
               encounter_id=body["encounter_id"], reason=body["reason"], started_at=at,
               expires_at=at + timedelta(hours=body["hours"] or default_hours), ended_at=None, ended_by=None)
    with ctx().db.session() as session:
        session.execute(care_relationships.insert().values(**row))
    decision.relationship = body["kind"]  # the audit record of this request says what was declared
    return to_json(row, at), 201, {"Location": f"/v1/people/{decision.subject}/relationships/{row['id']}"}


@bp.route("/<nhs_number>/relationships", methods=["GET"], parameters=nhs_path())
@bp.response(200, ListSchema)
def list_relationships(nhs_number):
    """Every organisation with a relationship to the person, current and past, newest first."""
    decision = policy.current()
    with ctx().db.session() as session:
        rows = session.execute(select(care_relationships).where(care_relationships.c.nhs_number == decision.subject)
                               .order_by(care_relationships.c.started_at.desc())).mappings().all()
    at = now()
    return {"items": [to_json(r, at) for r in rows]}


@bp.route("/<nhs_number>/relationships/<relationship_id>", methods=["DELETE"], parameters=nhs_path())
@bp.response(200, RelationshipSchema)
def end(nhs_number, relationship_id):
    """End a declared relationship early (a discharge): the organisation's own, or any for an admin."""
    decision = policy.current()
    who = decision.caller
    r = care_relationships
    with ctx().db.session() as session:
        row = session.execute(select(r).where(r.c.id == relationship_id, r.c.nhs_number == decision.subject,
                                              r.c.source == "declared").with_for_update()).mappings().first()
        if row is None or (row["org"] != who.org and who.role != "admin"):
            raise Problem(404, "Not Found", "No such declared relationship of your organisation.")
        if row["ended_at"] is None:
            session.execute(r.update().where(r.c.id == relationship_id).values(ended_at=now(), ended_by=who.client_id))
        row = session.execute(select(r).where(r.c.id == relationship_id)).mappings().first()
    return to_json(row)


def _cursor(text: str) -> tuple[datetime, str]:
    started, _, rel_id = text.partition("|")
    try:
        return datetime.fromisoformat(started), rel_id
    except ValueError:
        raise Problem(422, "Unprocessable Content", "Some fields are not valid: before",
                      errors={"before": ["Not a cursor this list gave out."]}) from None


def _accesses(session, row) -> int:
    """How many audited accesses the organisation made to the person under this relationship."""
    until = row["ended_at"] or row["expires_at"]
    a = audit_log
    return session.execute(select(func.count()).select_from(a).where(
        a.c.nhs_number == row["nhs_number"], a.c.org == row["org"], a.c.relationship == row["kind"],
        a.c.at >= iso(row["started_at"]), a.c.at <= iso(until))).scalar_one()


@review_bp.route("/review", methods=["GET"])
@review_bp.arguments(ReviewQuery, location="query")
@review_bp.response(200, ReviewSchema)
def review(query):
    """Declared relationships, newest first, with the accesses made under each: an administrator
    sees all; a GP practice sees those of the people whose care plan it holds."""
    who = policy.current().caller
    r = care_relationships
    stmt = select(r).where(r.c.source == "declared")
    if query["kind"]:
        stmt = stmt.where(r.c.kind == query["kind"])
    if who.role == "gp":
        mine = select(r.c.nhs_number).where(r.c.org == who.org, r.c.kind == "plan", r.c.ended_at.is_(None))
        stmt = stmt.where(r.c.nhs_number.in_(mine))
    elif who.role != "admin":
        raise Problem(403, "Forbidden", "The review list is for the person's GP practice and administrators.")
    if query["before"]:
        started, rel_id = _cursor(query["before"])
        stmt = stmt.where(or_(r.c.started_at < started, and_(r.c.started_at == started, r.c.id < rel_id)))
    with ctx().db.session() as session:
        rows = session.execute(stmt.order_by(r.c.started_at.desc(), r.c.id.desc()).limit(query["limit"])
                               ).mappings().all()
        items = [dict(to_json(row), break_glass=row["kind"] == policy.EMERGENCY, accesses=_accesses(session, row))
                 for row in rows]
    cursor = f"{rows[-1]['started_at'].isoformat()}|{rows[-1]['id']}" if len(rows) == query["limit"] else None
    return {"items": items, "next_cursor": cursor}
