"""The gateway's own routes: the portfolio and what is read from the projection. A person's access
log is a route of this blueprint too, written with the other audit routes (gateway/audit/routes.py)."""
from __future__ import annotations

import flask_smorest
import marshmallow as ma
from flask import current_app, g, jsonify, request

from coproduction.http import Problem
from coproduction.nhs_number import OPENAPI as NHS_NUMBER_SCHEMA

from . import policy, portfolio

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


def decided() -> policy.Decision:
    """The decision on a route that reads the person's portfolio document. The access decision
    (gateway/policy/) has already settled the person, the caller's relationship and the person's
    sharing preferences, and read the document with them (the routes that call this have rules with
    ``document=True``). The document's ``updated_at`` is left in ``g.portfolio_updated_at`` (the
    admission summary shows it)."""
    decision = policy.current()
    if not decision.rule.document:
        raise RuntimeError(f"the rule of {request.url_rule} does not read the portfolio document")
    if decision.document_text is None:
        raise Problem(404, "Not Found", "No portfolio for this person yet.")
    g.portfolio_updated_at = decision.document_updated_at
    return decision


def person() -> tuple:
    """The decided person's portfolio: (caller, initiatives left out for the caller, document)."""
    decision = decided()
    return decision.caller, set(decision.unseen), decision.document


@bp.route("/<nhs_number>/portfolio", parameters=nhs_path())
@bp.response(200, PortfolioSchema)
def get_portfolio(nhs_number):
    decision = decided()
    if not decision.unseen:  # nothing to leave out: the stored text, never parsed and encoded again
        return current_app.response_class(portfolio.whole(decision.document_text) + "\n",
                                          mimetype=current_app.json.mimetype)
    return jsonify(portfolio.for_role(decision.document, set(decision.unseen)))


class PrioritiesSchema(ma.Schema):
    nhs_number = ma.fields.String()
    items = ma.fields.List(ma.fields.Dict())
    past = ma.fields.List(ma.fields.Dict())
    withheld = ma.fields.List(ma.fields.String())


@bp.route("/<nhs_number>/priorities", parameters=nhs_path())
@bp.alt_response(200, schema=PrioritiesSchema, description="What matters to the person, merged and ranked.")
def get_priorities(nhs_number):
    _who, hidden, document = person()
    doc = portfolio.for_role(document, hidden)
    return jsonify(nhs_number=nhs_number, items=doc["priorities"], past=doc["past_priorities"],
                   withheld=doc["withheld"])
