"""A person's sharing preferences: which initiatives are withheld from which roles.

They are set by the person's GP practice (the organisation holding their care plan) or an
administrator, always saying on whose behalf (the person, or their representative); every change
is kept. The access decision (gateway/policy/) applies them to every request.
"""
from __future__ import annotations

import flask_smorest
import marshmallow as ma
from flask import jsonify
from sqlalchemy import select

from coproduction.events import iso, now
from coproduction.http import Problem, ctx

from . import policy
from .api import nhs_path
from .models import care_relationships, sharing, sharing_history

ROLES_WITH_SHARING = ("hospital", "gp", "social_care", "community")

bp = flask_smorest.Blueprint("consent", __name__, url_prefix="/v1/people",
                             description="A person's sharing preferences: set by their GP practice on their behalf")


class SharingSchema(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    withhold = ma.fields.Dict(
        keys=ma.fields.String(validate=ma.validate.OneOf(ROLES_WITH_SHARING)),
        values=ma.fields.List(ma.fields.String(validate=ma.validate.OneOf(policy.SHAREABLE)),
                              validate=ma.validate.Length(max=len(policy.SHAREABLE))),
        required=True)
    on_behalf_of = ma.fields.String(load_default="person", validate=ma.validate.OneOf(("person", "representative")),
                                    metadata={"description": "who asked for these preferences"})
    representative = ma.fields.String(load_default=None, allow_none=True, validate=ma.validate.Length(min=1, max=200),
                                      metadata={"description": "the representative's name and relationship"})
    note = ma.fields.String(load_default=None, allow_none=True, validate=ma.validate.Length(max=500))

    @ma.validates_schema
    def _representative_named(self, data, **kwargs):
        if data.get("on_behalf_of") == "representative" and not data.get("representative"):
            raise ma.ValidationError("Name the representative who asked.", "representative")


class SharingOutSchema(ma.Schema):
    nhs_number = ma.fields.String()
    withhold = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.List(ma.fields.String()))
    set_at = ma.fields.String(allow_none=True)
    set_by = ma.fields.Dict(allow_none=True)
    on_behalf_of = ma.fields.String(allow_none=True)
    representative = ma.fields.String(allow_none=True)


class HistorySchema(ma.Schema):
    nhs_number = ma.fields.String()
    items = ma.fields.List(ma.fields.Nested(SharingOutSchema))


def _holds_the_plan(session, nhs_number: str, org: str) -> bool:
    r = care_relationships
    return session.execute(select(r.c.id).where(r.c.nhs_number == nhs_number, r.c.org == org,
                                                r.c.kind == "plan", r.c.ended_at.is_(None)).limit(1)).first() is not None


def _entry(row) -> dict:
    return {"nhs_number": row["nhs_number"], "withhold": row["withhold"], "set_at": iso(row["set_at"]),
            "set_by": {"client": row["set_by_name"], "org": row["set_by_org"], "role": row["set_by_role"]},
            "on_behalf_of": row["on_behalf_of"], "representative": row["representative"]}


@bp.route("/<nhs_number>/sharing", methods=["PUT"], parameters=nhs_path())
@bp.arguments(SharingSchema)
@bp.alt_response(200, schema=SharingOutSchema, description="The person's sharing preferences, as stored.")
def put_sharing(body, nhs_number):
    """Set the person's preferences (their GP practice, or an administrator), on their behalf."""
    decision = policy.current()
    who = decision.caller
    withhold = {role: sorted(set(services)) for role, services in body["withhold"].items() if services}
    at = now()
    with ctx().db.session() as session:
        if not (who.role == "admin" or (who.role == "gp" and _holds_the_plan(session, decision.subject, who.org))):
            raise Problem(403, "Forbidden", "Sharing preferences are set by the person's GP practice (the "
                          "organisation holding their care plan) or an administrator, on the person's behalf.")
        values = dict(withhold=withhold, updated_at=at, updated_by=who.client_id)
        if session.execute(select(sharing.c.nhs_number).where(sharing.c.nhs_number == decision.subject)).first():
            session.execute(sharing.update().where(sharing.c.nhs_number == decision.subject).values(**values))
        else:
            session.execute(sharing.insert().values(nhs_number=decision.subject, **values))
        entry = dict(nhs_number=decision.subject, withhold=withhold, set_at=at, set_by_client=who.client_id,
                     set_by_name=who.name, set_by_org=who.org, set_by_role=who.role,
                     on_behalf_of=body["on_behalf_of"], representative=body["representative"], note=body["note"])
        session.execute(sharing_history.insert().values(**entry))
    return jsonify(_entry(entry))


def _history(session, nhs_number: str, limit: int | None = None):
    stmt = select(sharing_history).where(sharing_history.c.nhs_number == nhs_number).order_by(
        sharing_history.c.id.desc())
    return session.execute(stmt.limit(limit) if limit else stmt).mappings().all()


@bp.route("/<nhs_number>/sharing", methods=["GET"], parameters=nhs_path())
@bp.alt_response(200, schema=SharingOutSchema, description="The person's sharing preferences.")
def get_sharing(nhs_number):
    decision = policy.current()
    with ctx().db.session() as session:
        latest = _history(session, decision.subject, 1)
        prefs = session.execute(select(sharing.c.withhold).where(sharing.c.nhs_number == decision.subject)
                                ).scalar_one_or_none()
    if latest:
        return jsonify(dict(_entry(latest[0]), withhold=prefs or {}))
    return jsonify(nhs_number=decision.subject, withhold=prefs or {}, set_at=None, set_by=None,
                   on_behalf_of=None, representative=None)


@bp.route("/<nhs_number>/sharing/history", methods=["GET"], parameters=nhs_path())
@bp.alt_response(200, schema=HistorySchema, description="Every change of the preferences, newest first.")
def sharing_history_of(nhs_number):
    decision = policy.current()
    with ctx().db.session() as session:
        items = [_entry(row) for row in _history(session, decision.subject)]
    return jsonify(nhs_number=decision.subject, items=items)
