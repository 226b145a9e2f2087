"""The gateway's own routes: the portfolio and what is read from the projection."""
from __future__ import annotations

import flask_smorest
import marshmallow as ma
from flask import jsonify
from sqlalchemy import select

from coproduction.http import Problem, ctx
from coproduction.nhs_number import is_valid

from . import portfolio
from .models import portfolios
from .security import audit_person, need, withheld

bp = flask_smorest.Blueprint("people", __name__, url_prefix="/v1/people",
                             description="A person's portfolio, read from the gateway's own projection")


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
    """Check scope and NHS number for a person route; return (caller, withheld services, document)."""
    audit_person(nhs_number, scope)
    who = need(scope)
    if not is_valid(nhs_number):
        raise Problem(422, "Unprocessable Content", errors={"nhs_number": ["Not a valid NHS number."]})
    with ctx().db.session() as session:
        document = session.execute(select(portfolios.c.document)
                                   .where(portfolios.c.nhs_number == nhs_number)).scalar_one_or_none()
        hidden = withheld(session, nhs_number, who.role)
    if document is None:
        raise Problem(404, "Not Found", "No portfolio for this person yet.")
    return who, hidden, document


@bp.route("/<nhs_number>/portfolio")
@bp.response(200, PortfolioSchema)
def get_portfolio(nhs_number):
    _who, hidden, document = person(nhs_number, "portfolio:read")
    return jsonify(portfolio.for_role(document, hidden))


@bp.route("/<nhs_number>/priorities")
def get_priorities(nhs_number):
    _who, hidden, document = person(nhs_number, "portfolio:read")
    doc = portfolio.for_role(document, hidden)
    return jsonify(nhs_number=nhs_number, items=doc["priorities"], past=doc["past_priorities"],
                   withheld=doc["withheld"])
