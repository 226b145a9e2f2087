"""The gateway's own routes: the portfolio and what is read from the projection."""
from __future__ import annotations

import re

import flask_smorest
import marshmallow as ma
from flask import g, jsonify
from sqlalchemy import select

from coproduction.http import Problem, ctx
from coproduction.nhs_number import OPENAPI as NHS_NUMBER_SCHEMA

from . import audit, policy, portfolio
from .audit.routes import AuditPageSchema, AuditQuery, page as audit_page
from .models import audit_log, portfolios, subjects
from .security import request_session

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


def person() -> tuple:
    """The decided person's portfolio: (caller, initiatives left out for the caller, document),
    read in the request's transaction. The access decision (gateway/policy/) has already settled the
    person, the caller's relationship and the person's sharing preferences. The document's
    ``updated_at`` is left in ``g.portfolio_updated_at`` (the admission summary shows it)."""
    decision = policy.current()
    row = request_session().execute(select(portfolios.c.document, portfolios.c.updated_at)
                                    .where(portfolios.c.nhs_number == decision.subject)).first()
    if row is None:
        raise Problem(404, "Not Found", "No portfolio for this person yet.")
    g.portfolio_updated_at = row.updated_at
    return decision.caller, set(decision.unseen), row.document


@bp.route("/<nhs_number>/portfolio", parameters=nhs_path())
@bp.response(200, PortfolioSchema)
def get_portfolio(nhs_number):
    _who, hidden, document = person()
    return jsonify(portfolio.for_role(document, hidden))


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


# -- the person's access log -----------------------------------------------------------------------
class AccessLogSchema(AuditPageSchema):
    withheld = ma.fields.Integer(metadata={"description": "records of this page left out: of what the "
                                                          "caller's role may not see itself"})


@bp.route("/<nhs_number>/access-log", parameters=nhs_path())
@bp.arguments(AuditQuery, location="query")
@bp.alt_response(200, schema=AccessLogSchema, description="Who looked at this person's record.")
def access_log(query, nhs_number):
    """Who looked at this person's record, when, why and with what outcome. Each item carries every
    field its leaf commits to, its ``leaf_index`` (null until sequenced, within a second) and its
    ``leaf_hash``, so anyone shown it can check it is in the signed log (docs/audit.md). A role is
    shown only the records of what it may see itself: the others are left out and counted in
    ``withheld``; and where a record holds text its caller wrote (a path, a purpose) naming another
    person or a record this role may not see, that is replaced and the item says ``redacted``
    (its ``leaf_hash`` still proves it is in the log)."""
    decision = policy.current()
    page = audit_page([audit_log.c.nhs_number == decision.subject], query["after"], query["limit"])
    items = [item for item in page["items"] if item.get("initiative") not in decision.unseen]
    page["withheld"] = len(page["items"]) - len(items)
    shown = set(request_session().execute(select(subjects.c.resource_id).where(
        subjects.c.nhs_number == decision.subject, subjects.c.service.not_in(decision.unseen))).scalars())
    page["items"] = [_for_the_log(item, decision.subject, shown) for item in items]
    return jsonify(page)


def _for_the_log(item: dict, nhs_number: str, shown_ids: set[str]) -> dict:
    out = dict(item, leaf_hash=audit.leaf_hash_of(item).hex())
    out["resource"] = redact(item["resource"], nhs_number, shown_ids)
    out["purpose"] = redact(item["purpose"], nhs_number, shown_ids)
    out["redacted"] = (out["resource"], out["purpose"]) != (item["resource"], item["purpose"])
    return out


NHS_LIKE = re.compile(r"(?<!\d)\d{10}(?!\d)")
UUID_LIKE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def redact(text: str, nhs_number: str, shown_ids: set[str]) -> str:
    """What a caller wrote into its request (a path, a purpose) as this person's carers may read it:
    another person's NHS number, or the id of a record they may not see, is replaced."""
    text = NHS_LIKE.sub(lambda m: m.group(0) if m.group(0) == nhs_number else "[another person]", text)
    return UUID_LIKE.sub(lambda m: m.group(0) if m.group(0).lower() in shown_ids else "[withheld]", text)
