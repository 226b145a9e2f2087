"""The gateway's own routes: the portfolio and what is read from the projection."""
from __future__ import annotations

import flask_smorest
import marshmallow as ma
from flask import g, jsonify
from sqlalchemy import select

from coproduction.http import Problem, ctx
from coproduction.nhs_number import OPENAPI as NHS_NUMBER_SCHEMA, is_valid

from . import portfolio
from .audit_api import AuditPageSchema, AuditQuery, page as audit_page
from .models import portfolios, sharing
from .security import audit_person, hidden_from, need, request_session

bp = flask_smorest.Blueprint("people", __name__, url_prefix="/v1/people",
                             description="A person's portfolio, read from the gateway's own projection")


def nhs_path() -> list[dict]:
    """The person routes' path parameter, documented as what it is (a bad one still gets a 422)."""
    return [{"in": "path", "name": "nhs_number", "required": True, "schema": dict(NHS_NUMBER_SCHEMA),
             "description": "The person's NHS number."}]


class PortfolioSchema(ma.Schema):
    nhs_number = ma.fields.String()
    priorities = ma.fields.List(ma.fields.Dict())
    past_priorities = ma.fields.List(ma.fields.Dict())
    plan = ma.fields.Dict(allow_none=True)
    plans = ma.fields.List(ma.fields.Dict())
    budget = ma.fields.Dict(allow_none=True)
    decisions = ma.fields.List(ma.fields.Dict())
    groups = ma.fields.List(ma.fields.Dict())
    timeline = ma.fields.List(ma.fields.Dict())
    freshness = ma.fields.Dict()
    withheld = ma.fields.List(ma.fields.String())


def person(nhs_number: str, scope: str) -> tuple:
    """Check scope and NHS number for a person route; return (caller, withheld services, document).
    The document and the person's sharing preferences come in one query, in the request's transaction;
    the document's ``updated_at`` is left in ``g.portfolio_updated_at`` (the admission summary shows it)."""
    audit_person(nhs_number, scope)
    who = need(scope)
    if not is_valid(nhs_number):
        raise Problem(422, "Unprocessable Content", errors={"nhs_number": ["Not a valid NHS number."]})
    row = request_session().execute(
        select(portfolios.c.document, portfolios.c.updated_at, sharing.c.withhold)
        .select_from(portfolios.outerjoin(sharing, sharing.c.nhs_number == portfolios.c.nhs_number))
        .where(portfolios.c.nhs_number == nhs_number)).first()
    if row is None:
        raise Problem(404, "Not Found", "No portfolio for this person yet.")
    g.portfolio_updated_at = row.updated_at
    return who, hidden_from(row.withhold, who.role), row.document


@bp.route("/<nhs_number>/portfolio", parameters=nhs_path())
@bp.response(200, PortfolioSchema)
def get_portfolio(nhs_number):
    _who, hidden, document = person(nhs_number, "portfolio:read")
    return jsonify(portfolio.for_role(document, hidden))


class PrioritiesSchema(ma.Schema):
    nhs_number = ma.fields.String()
    items = ma.fields.List(ma.fields.Dict())
    past = ma.fields.List(ma.fields.Dict())
    withheld = ma.fields.List(ma.fields.String())


@bp.route("/<nhs_number>/priorities", parameters=nhs_path())
@bp.alt_response(200, schema=PrioritiesSchema, description="What matters to the person, merged and ranked.")
def get_priorities(nhs_number):
    _who, hidden, document = person(nhs_number, "portfolio:read")
    doc = portfolio.for_role(document, hidden)
    return jsonify(nhs_number=nhs_number, items=doc["priorities"], past=doc["past_priorities"],
                   withheld=doc["withheld"])


# -- the person's access log -----------------------------------------------------------------------
@bp.route("/<nhs_number>/access-log", parameters=nhs_path())
@bp.arguments(AuditQuery, location="query")
@bp.alt_response(200, schema=AuditPageSchema, description="Who looked at this person's record.")
def access_log(query, nhs_number):
    """Who looked at this person's record, when, why and with what outcome. Each item carries every
    field its leaf commits to and its ``leaf_index`` (null until sequenced, within a second), so
    anyone shown it can check it is in the signed log (docs/audit.md)."""
    from .models import audit_log
    audit_person(nhs_number, "portfolio:read")
    need("portfolio:read")
    if not is_valid(nhs_number):
        raise Problem(422, "Unprocessable Content", errors={"nhs_number": ["Not a valid NHS number."]})
    return jsonify(audit_page([audit_log.c.nhs_number == nhs_number], query["after"], query["limit"]))


# -- consent ---------------------------------------------------------------------------------------
SHAREABLE = ("plans", "budgets", "decisions", "groups")
ROLES_WITH_SHARING = ("hospital", "gp", "social_care", "community")


class SharingSchema(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    withhold = ma.fields.Dict(
        keys=ma.fields.String(validate=ma.validate.OneOf(ROLES_WITH_SHARING)),
        values=ma.fields.List(ma.fields.String(validate=ma.validate.OneOf(SHAREABLE)),
                              validate=ma.validate.Length(max=len(SHAREABLE))),
        required=True)


class SharingOutSchema(ma.Schema):
    nhs_number = ma.fields.String()
    withhold = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.List(ma.fields.String()))


def _may_set_sharing(who) -> None:
    if not (who.has("admin") or who.has("plans:write")):
        raise Problem(403, "Forbidden", "Sharing preferences are set by an administrator or by the "
                      "person's GP on their behalf (scope admin or plans:write).")


@bp.route("/<nhs_number>/sharing", methods=["PUT"], parameters=nhs_path())
@bp.arguments(SharingSchema)
@bp.alt_response(200, schema=SharingOutSchema, description="The person's sharing preferences, as stored.")
def put_sharing(body, nhs_number):
    from .models import sharing
    from coproduction.events import now
    audit_person(nhs_number, "admin")
    who = need("portfolio:read")
    _may_set_sharing(who)
    if not is_valid(nhs_number):
        raise Problem(422, "Unprocessable Content", errors={"nhs_number": ["Not a valid NHS number."]})
    withhold = {role: sorted(set(services)) for role, services in body["withhold"].items() if services}
    with ctx().db.session() as session:
        exists = session.execute(select(sharing.c.nhs_number).where(sharing.c.nhs_number == nhs_number)
                                 ).scalar_one_or_none()
        values = dict(withhold=withhold, updated_at=now(), updated_by=who.client_id)
        if exists:
            session.execute(sharing.update().where(sharing.c.nhs_number == nhs_number).values(**values))
        else:
            session.execute(sharing.insert().values(nhs_number=nhs_number, **values))
    return jsonify(nhs_number=nhs_number, withhold=withhold)


@bp.route("/<nhs_number>/sharing", methods=["GET"], parameters=nhs_path())
@bp.alt_response(200, schema=SharingOutSchema, description="The person's sharing preferences.")
def get_sharing(nhs_number):
    from .models import sharing
    audit_person(nhs_number, "portfolio:read")
    need("portfolio:read")
    if not is_valid(nhs_number):
        raise Problem(422, "Unprocessable Content", errors={"nhs_number": ["Not a valid NHS number."]})
    with ctx().db.session() as session:
        prefs = session.execute(select(sharing.c.withhold).where(sharing.c.nhs_number == nhs_number)
                                ).scalar_one_or_none()
    return jsonify(nhs_number=nhs_number, withhold=prefs or {})
