"""HTTP routes of the budgets service: each reads the request, runs one command of ``handlers``
in a transaction and answers with the budget and its ETag."""
from __future__ import annotations

import json

import flask_smorest
from sqlalchemy import select

from coproduction.http import ctx, with_etag
from coproduction.idempotency import create_once, created
from coproduction.paging import keyset_page, where_given
from coproduction.routes import action_routes, endpoint

from . import domain, handlers
from .handlers import BUDGETS, budget_json
from .models import Budget, idempotency_keys, outbox
from .schemas import (ActivateSchema, AgreeSchema, BudgetCreateSchema, BudgetListQuery, BudgetListSchema,
                      BudgetPatchSchema, BudgetSchema, ChangeHistorySchema, ChangeQuery, EndSchema,
                      LineItemCreateSchema, LineItemListSchema, LineItemPatchSchema, ResumeSchema, ReviewSchema,
                      StartPlanningSchema, SuspendSchema)

bp = flask_smorest.Blueprint("budgets", __name__, url_prefix="/v1/budgets",
                             description="Personal health budgets (and Care Act personal budgets)")


def _write(command, *args):
    with ctx().db.session() as session:
        budget = command(session, *args)[0]
        return with_etag(budget_json(budget))


# -- budgets -------------------------------------------------------------------------------
@endpoint(bp, "", "budgets:write", BudgetSchema, method="POST", body=BudgetCreateSchema, status=201)
def create_budget(body):
    return create_once(idempotency_keys, created(handlers.create, body, budget_json, "/v1/budgets"))


@endpoint(bp, "", "budgets:read", BudgetListSchema, body=BudgetListQuery, location="query")
def list_budgets(query):
    stmt = where_given(select(Budget), Budget, query, "nhs_number", "plan_id", "status")
    with ctx().db.session() as session:
        rows, next_cursor = keyset_page(session, stmt, Budget, query["limit"], query["cursor"])
        return {"items": [budget_json(b) for b in rows], "next_cursor": next_cursor}


@endpoint(bp, "/<budget_id>", "budgets:read", BudgetSchema)
def get_budget(budget_id):
    with ctx().db.session() as session:
        return with_etag(budget_json(BUDGETS.load(session, budget_id)))


@endpoint(bp, "/<budget_id>", "budgets:write", BudgetSchema, method="PATCH", body=BudgetPatchSchema)
def patch_budget(body, budget_id):
    change = body.pop("change")
    return _write(handlers.change, budget_id, body, change)


# -- life cycle ----------------------------------------------------------------------------
@endpoint(bp, "/<budget_id>/start-planning", "budgets:write", BudgetSchema, method="POST",
          body=StartPlanningSchema)
def start_planning(body, budget_id):
    """requested → planning: support planning with the person begins."""
    return _write(handlers.start_planning, budget_id, body)


@endpoint(bp, "/<budget_id>/review", "budgets:write", BudgetSchema, method="POST", body=ReviewSchema)
def review_budget(body, budget_id):
    """``action: start`` (active → under_review) or ``action: complete`` (under_review → active)."""
    command = handlers.start_review if body["action"] == "start" else handlers.complete_review
    return _write(command, budget_id, body)


def _life_cycle(action: str, body: dict, budget_id: str):
    return _write(getattr(handlers, action), budget_id, body)


action_routes(bp, "/<budget_id>/{action}", "budgets:write", BudgetSchema, "{action}_budget", _life_cycle, [
    ("agree", AgreeSchema,
     "planning → agreed: the person and the professional agree how the money meets their priorities."),
    ("activate", ActivateSchema, "agreed → active: the money starts to flow."),
    ("suspend", SuspendSchema,
     "active or under_review → suspended, with the reason and from when (and until when, if known)."),
    ("resume", ResumeSchema, "suspended → active."),
    ("end", EndSchema, "Any state but ended → ended (final), with the reason and the date it ends."),
])


# -- line items ----------------------------------------------------------------------------
@endpoint(bp, "/<budget_id>/line-items", "budgets:read", LineItemListSchema)
def list_line_items(budget_id):
    with ctx().db.session() as session:
        budget = BUDGETS.load(session, budget_id)
        return with_etag({"budget_id": budget.id, "nhs_number": budget.nhs_number, "version": budget.version,
                          "items": budget.content["line_items"]})


@endpoint(bp, "/<budget_id>/line-items", "budgets:write", BudgetSchema, method="POST",
          body=LineItemCreateSchema, status=201)
def add_line_item(body, budget_id):
    change = body.pop("change")

    def add(session):
        budget, item, _event = handlers.add_line_item(session, budget_id, body, change)
        return budget_json(budget), f"/v1/budgets/{budget.id}/line-items/{item['id']}"
    return create_once(idempotency_keys, add)


@endpoint(bp, "/<budget_id>/line-items/<item_id>", "budgets:read")
def get_line_item(budget_id, item_id):
    with ctx().db.session() as session:
        budget = BUDGETS.load(session, budget_id)
        item = budget.content["line_items"][domain.find_item(budget.content, item_id)]
        return with_etag(dict(item, budget_id=budget.id, nhs_number=budget.nhs_number, version=budget.version))


@endpoint(bp, "/<budget_id>/line-items/<item_id>", "budgets:write", BudgetSchema, method="PATCH",
          body=LineItemPatchSchema)
def patch_line_item(body, budget_id, item_id):
    change = body.pop("change")
    return _write(handlers.change_line_item, budget_id, item_id, body, change)


@endpoint(bp, "/<budget_id>/line-items/<item_id>", "budgets:write", BudgetSchema, method="DELETE",
          body=ChangeQuery, location="query")
def delete_line_item(change, budget_id, item_id):
    """Remove a line item; the reason and dates of the change go in the query (?reason=…)."""
    return _write(handlers.remove_line_item, budget_id, item_id, change)


# -- history -------------------------------------------------------------------------------
@endpoint(bp, "/<budget_id>/changes", "budgets:read", ChangeHistorySchema)
def budget_changes(budget_id):
    """Every event of this budget, oldest first: what changed, why, from when, and who changed it."""
    with ctx().db.session() as session:
        budget = BUDGETS.load(session, budget_id)
        rows = session.execute(select(outbox.c.body).where(outbox.c.aggregate_id == budget.id)
                               .order_by(outbox.c.id)).scalars().all()
    items = []
    for body in rows:
        event = json.loads(body)
        items.append({"version": event["aggregateversion"], "type": event["type"], "time": event["time"],
                      "event_id": event["id"], "status": event["data"]["status"],
                      "change": event["data"]["change"], "changed_by": event["data"]["changed_by"]})
    return {"budget_id": budget.id, "nhs_number": budget.nhs_number, "items": items}
