"""The budgets service's commands: create, change, move through the life cycle, edit line items.

Each runs in the caller's transaction through the kernel's write recipe (``BUDGETS``, an
:class:`~coproduction.aggregate.Aggregate`): it loads the budget FOR UPDATE, checks ``If-Match``,
changes it, checks the budget's rules on the result (a broken rule is a 422 naming it and nothing
is stored), bumps the version and writes the event, which says what changed, to the outbox.
Each returns the budget and the event it wrote (``None`` when nothing changed), so the API, seed
and bench call them alike.
"""
from __future__ import annotations

import copy
import uuid

from coproduction.aggregate import Aggregate, changed_by
from coproduction.auth import service_caller
from coproduction.events import iso, now

from . import domain
from .models import Budget, outbox

EVENT_FIELDS = ("plan_id", "kind", "status", "annual_pence", "currency", "allocated_pence", "holdings",
                "line_items", "priorities", "holder", "care_coordinator", "next_review_date",
                "agreed_by", "person_agreed", "agreed_at", "started_on", "review", "suspension", "ended")


def budget_json(budget: Budget) -> dict:
    """The budget as the API shows it and as every one of its events carries it."""
    c = budget.content
    spent = domain.allocated(c["line_items"])
    return {
        "id": budget.id, "version": budget.version, "status": budget.status,
        "nhs_number": budget.nhs_number, "plan_id": budget.plan_id, "kind": c["kind"],
        "annual_pence": c["annual_pence"], "currency": c["currency"], "holdings": c["holdings"],
        "priorities": c["priorities"], "line_items": c["line_items"],
        "allocated_pence": spent, "unallocated_pence": c["annual_pence"] - spent,
        "holder": c["holder"], "care_coordinator": c.get("care_coordinator"),
        "next_review_date": c.get("next_review_date"),
        "agreed_by": budget.agreed_by, "person_agreed": budget.person_agreed,
        "agreed_at": iso(budget.agreed_at) if budget.agreed_at else None,
        "started_on": c.get("started_on"), "review": c.get("review"), "suspension": c.get("suspension"),
        "ended": c.get("ended"),
        "created_at": iso(budget.created_at), "updated_at": iso(budget.updated_at),
    }


def event_data(budget: Budget, change: dict) -> dict:
    body = budget_json(budget)
    return dict({k: body[k] for k in EVENT_FIELDS}, budget_id=budget.id, change=change, changed_by=changed_by())


BUDGETS = Aggregate("budgets", Budget, "budget", domain.MACHINE, outbox, event_data)


def _view(budget: Budget) -> dict:
    """The budget's state as a change compares it."""
    return dict(copy.deepcopy(budget.content), status=budget.status, plan_id=budget.plan_id)


def _commit(session, budget: Budget, before: dict, type_: str, reason=None, effective_from=None,
            effective_to=None) -> dict:
    """A new version and the event saying what changed since ``before``; return the event."""
    change = domain.diff(before, _view(budget), reason, domain.day(effective_from), domain.day(effective_to))
    BUDGETS.bump(budget)
    return BUDGETS.emit(session, budget, type_, change=change)


def _open_for_change(session, budget_id: str) -> Budget:
    budget = BUDGETS.lock(session, budget_id)
    domain.check_open(budget.status)
    return budget


# -- creating and changing -----------------------------------------------------------------
def create(session, body: dict) -> tuple[Budget, dict]:
    """A budget requested for a person against their plan."""
    at = now()
    content = domain.new_content(body, at)
    domain.check_rules(content, "requested")
    budget = Budget(id=str(uuid.uuid4()), nhs_number=body["nhs_number"], plan_id=str(body["plan_id"]),
                    status="requested", version=1, content=content, created_by=service_caller().client_id,
                    created_at=at, updated_at=at)
    session.add(budget)
    return budget, BUDGETS.emit(session, budget, "budget.created", change=domain.creation_change(content["line_items"]))


def change(session, budget_id: str, body: dict, change: dict) -> tuple[Budget, dict | None]:
    """Change the budget's fields; a PATCH that changes nothing makes no version and no event."""
    budget = _open_for_change(session, budget_id)
    before = _view(budget)
    content = domain.patched_content(budget.content, body, now())
    domain.check_rules(content, budget.status, change)
    if "plan_id" in body:
        budget.plan_id = str(body["plan_id"])
    budget.content = content
    if _view(budget) == before:
        return budget, None
    return budget, _commit(session, budget, before, "budget.changed", **change)


# -- life cycle ----------------------------------------------------------------------------
def _move(session, budget_id: str, action: str, type_: str, apply=None, reason=None, effective_from=None,
          effective_to=None) -> tuple[Budget, dict]:
    budget = BUDGETS.lock(session, budget_id)
    before = _view(budget)
    from_status = budget.status
    BUDGETS.move(budget, action)
    content = copy.deepcopy(budget.content)
    if apply is not None:
        apply(budget, content, from_status)
    budget.content = content
    return budget, _commit(session, budget, before, type_, reason, effective_from, effective_to)


def start_planning(session, budget_id: str, body: dict):
    """requested → planning: support planning with the person begins."""
    def apply(budget, content, _from):
        if body["care_coordinator"]:
            content["care_coordinator"] = body["care_coordinator"]
    return _move(session, budget_id, "start_planning", "budget.planning-started", apply, reason=body["note"])


def agree(session, budget_id: str, body: dict):
    """planning → agreed: the person and the professional agree how the money meets their priorities."""
    def apply(budget, content, _from):
        domain.check_agreeable(content)
        budget.agreed_by = body["agreed_by"]
        budget.person_agreed = body["person_agreed"]
        budget.agreed_at = now()
        if body["next_review_date"]:
            content["next_review_date"] = domain.day(body["next_review_date"])
    return _move(session, budget_id, "agree", "budget.agreed", apply)


def activate(session, budget_id: str, body: dict):
    """agreed → active: the money starts to flow."""
    start = domain.day(body["start_date"]) or domain.today()

    def apply(budget, content, _from):
        content["started_on"] = start
    return _move(session, budget_id, "activate", "budget.activated", apply, effective_from=start)


def start_review(session, budget_id: str, body: dict):
    """active → under_review."""
    caller = service_caller()

    def apply(budget, content, _from):
        content["review"] = {"started_at": iso(now()), "started_by": caller.name or caller.client_id,
                             "reason": body["reason"], "completed_at": None, "outcome": None}
    return _move(session, budget_id, "start_review", "budget.review-started", apply, reason=body["reason"])


def complete_review(session, budget_id: str, body: dict):
    """under_review → active, with the review's outcome."""
    caller = service_caller()

    def apply(budget, content, _from):
        review = dict(content.get("review") or {})
        review.update(completed_at=iso(now()), completed_by=caller.name or caller.client_id,
                      outcome=body["outcome"])
        content["review"] = review
        if body["next_review_date"]:
            content["next_review_date"] = domain.day(body["next_review_date"])
    return _move(session, budget_id, "complete_review", "budget.reviewed", apply, reason=body["outcome"])


def suspend(session, budget_id: str, body: dict):
    """active or under_review → suspended, with the reason and from when (and until when, if known)."""
    start = domain.day(body["effective_from"]) or domain.today()

    def apply(budget, content, from_status):
        content["suspension"] = {"reason": body["reason"], "effective_from": start,
                                 "effective_to": domain.day(body["effective_to"]), "suspended_at": iso(now()),
                                 "from_status": from_status}
    return _move(session, budget_id, "suspend", "budget.suspended", apply, body["reason"], start,
                 body["effective_to"])


def resume(session, budget_id: str, body: dict):
    """suspended → active."""
    start = domain.day(body["effective_from"]) or domain.today()

    def apply(budget, content, _from):
        content["suspension"] = None
    return _move(session, budget_id, "resume", "budget.resumed", apply, body["reason"], start)


def end(session, budget_id: str, body: dict):
    """Any state but ended → ended (final), with the reason and the date it ends."""
    end_on = domain.day(body["effective_from"]) or domain.today()

    def apply(budget, content, from_status):
        content["ended"] = {"reason": body["reason"], "effective_from": end_on, "ended_at": iso(now()),
                            "from_status": from_status}
    return _move(session, budget_id, "end", "budget.ended", apply, body["reason"], end_on)


# -- line items ----------------------------------------------------------------------------
def _change_items(session, budget: Budget, before: dict, content: dict, change: dict, index: int | None):
    domain.check_item_rules(content, budget.status, change, index)
    budget.content = content
    return _commit(session, budget, before, "budget.changed", **change)


def add_line_item(session, budget_id: str, body: dict, change: dict) -> tuple[Budget, dict, dict]:
    """Add a line item; returns the budget, the new item and the event."""
    budget = _open_for_change(session, budget_id)
    before = _view(budget)
    content = copy.deepcopy(budget.content)
    item = domain.line_item(body)
    if any(i["id"] == item["id"] for i in content["line_items"]):
        raise domain.unprocessable({"id": ["This budget already has a line item with this id."]})
    content["line_items"].append(item)
    event = _change_items(session, budget, before, content, change, len(content["line_items"]) - 1)
    return budget, item, event


def change_line_item(session, budget_id: str, item_id: str, body: dict, change: dict):
    """Change a line item's fields; a change that changes nothing makes no version and no event."""
    budget = _open_for_change(session, budget_id)
    before = _view(budget)
    content = copy.deepcopy(budget.content)
    n = domain.find_item(content, item_id)
    merged = dict(content["line_items"][n])
    merged.update({k: domain.day(v) if k.startswith("effective_") else v for k, v in body.items()})
    domain.check_dates(merged["effective_from"], merged["effective_to"])
    content["line_items"][n] = domain.line_item(merged, item_id)
    if content["line_items"][n] == budget.content["line_items"][n]:
        return budget, None
    return budget, _change_items(session, budget, before, content, change, n)


def remove_line_item(session, budget_id: str, item_id: str, change: dict):
    domain.check_dates(change["effective_from"], change["effective_to"])
    budget = _open_for_change(session, budget_id)
    before = _view(budget)
    content = copy.deepcopy(budget.content)
    del content["line_items"][domain.find_item(content, item_id)]
    return budget, _change_items(session, budget, before, content, change, None)
