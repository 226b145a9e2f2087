"""HTTP routes of the budgets service.

Every write loads the budget FOR UPDATE, checks ``If-Match``, changes it, checks the budget's
rules on the result (a broken rule is a 422 naming it and nothing is stored), bumps the version
and writes the event to the outbox in the same transaction.
"""
from __future__ import annotations

import copy
import json
import uuid
from datetime import datetime

import flask_smorest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from coproduction import idempotency
from coproduction.auth import requires, service_caller
from coproduction.events import iso, now, stamp_priorities
from coproduction.http import Problem, check_if_match, ctx, load_or_404, traceparent, with_etag
from coproduction.outbox import emit
from coproduction.paging import keyset_page

from .models import AGREED_STATES, Budget, IllegalTransition, allocated, annual_cost, idempotency_keys, outbox
from .schemas import (RULE_PRIORITIES, RULE_REASON, RULE_WITHIN, ActivateSchema, AgreeSchema,
                      BudgetCreateSchema, BudgetListQuery, BudgetListSchema, BudgetPatchSchema,
                      BudgetSchema, ChangeHistorySchema, ChangeQuery, EndSchema, LineItemCreateSchema,
                      LineItemListSchema, LineItemPatchSchema, ResumeSchema, ReviewSchema,
                      StartPlanningSchema, SuspendSchema, holdings_message)

bp = flask_smorest.Blueprint("budgets", __name__, url_prefix="/v1/budgets",
                             description="Personal health budgets (and Care Act personal budgets)")

#: what a change reports "from → to" for (line items are reported item by item)
TRACKED = ("status", "plan_id", "kind", "annual_pence", "currency", "holdings", "priorities", "holder",
           "care_coordinator", "next_review_date", "started_on")
ITEM_FIELDS = ("description", "category", "sector", "pence", "frequency", "effective_from",
               "effective_to", "priority_ids", "provider", "paid_from")
EVENT_FIELDS = ("plan_id", "kind", "status", "annual_pence", "currency", "allocated_pence", "holdings",
                "line_items", "priorities", "holder", "care_coordinator", "next_review_date",
                "agreed_by", "person_agreed", "agreed_at", "started_on", "review", "suspension", "ended")


def _day(value) -> str | None:
    """A date (or an ISO date already) as ISO text."""
    if value is None or isinstance(value, str):
        return value
    return value.isoformat()


def _today() -> str:
    return now().date().isoformat()


# -- representation ------------------------------------------------------------------------
def budget_json(budget: Budget) -> dict:
    c = budget.content
    spent = allocated(c["line_items"])
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


def _view(budget: Budget) -> dict:
    """The budget's state as a change compares it."""
    return dict(copy.deepcopy(budget.content), status=budget.status, plan_id=budget.plan_id)


def _describe(value) -> str:
    if isinstance(value, (list, dict)):
        return "…"
    return "none" if value is None else str(value)


def diff(before: dict, after: dict, reason: str | None, effective_from: str | None,
         effective_to: str | None) -> dict:
    """What changed between two views: fields from → to, line items added, removed and changed."""
    changed_fields = [{"field": k, "from": before.get(k), "to": after.get(k)}
                      for k in TRACKED if before.get(k) != after.get(k)]
    old = {i["id"]: i for i in before.get("line_items", [])}
    new = {i["id"]: i for i in after.get("line_items", [])}
    added = [new[i] for i in new if i not in old]
    removed = [old[i] for i in old if i not in new]
    changed = []
    for item_id in new:
        if item_id in old and new[item_id] != old[item_id]:
            changed.append({"id": item_id, "description": new[item_id]["description"],
                            "fields": [{"field": f, "from": old[item_id].get(f), "to": new[item_id].get(f)}
                                       for f in ITEM_FIELDS if old[item_id].get(f) != new[item_id].get(f)]})
    parts = []
    for f in changed_fields:
        if isinstance(f["to"], (list, dict)) or isinstance(f["from"], (list, dict)):
            parts.append(f"{f['field']} changed")
        else:
            parts.append(f"{f['field']} {_describe(f['from'])} → {_describe(f['to'])}")
    parts += [f"line item added: {i['description']}" for i in added]
    parts += [f"line item removed: {i['description']}" for i in removed]
    for c in changed:
        detail = ", ".join(f"{f['field']} {_describe(f['from'])} → {_describe(f['to'])}" for f in c["fields"])
        parts.append(f"line item changed: {c['description']} ({detail})")
    return {
        "summary": "; ".join(parts) or "no change",
        "fields": changed_fields,
        "line_items": {"added": added, "removed": removed, "changed": changed},
        "reason": reason,
        "effective_from": effective_from or _today(),
        "effective_to": effective_to,
    }


def _event_data(budget: Budget, change: dict) -> dict:
    body = budget_json(budget)
    caller = service_caller()
    data = {k: body[k] for k in EVENT_FIELDS}
    data.update(budget_id=budget.id, change=change,
                changed_by={"client": caller.client_id, "org": caller.org, "role": caller.role})
    return data


def _emit(session, budget: Budget, type_: str, change: dict) -> None:
    emit(session, outbox, service="budgets", type=type_, subject=budget.nhs_number, aggregate_id=budget.id,
         aggregate_version=budget.version, data=_event_data(budget, change), traceparent=traceparent())


# -- building and checking content ---------------------------------------------------------
def _line_item(body: dict, item_id: str | None = None) -> dict:
    item = {
        "id": item_id or str(body.get("id") or uuid.uuid4()),
        "description": body["description"], "category": body["category"], "sector": body["sector"],
        "pence": body["pence"], "frequency": body.get("frequency") or "annual",
        "effective_from": _day(body.get("effective_from")), "effective_to": _day(body.get("effective_to")),
        "priority_ids": [str(p) for p in body.get("priority_ids") or []],
        "provider": body.get("provider"), "paid_from": body.get("paid_from"),
    }
    item["annual_pence"] = annual_cost(item)
    return item


def _holdings(holdings: list[dict]) -> list[dict]:
    return [{"type": h["type"], "pence": h["pence"], "managed_by": h.get("managed_by")} for h in holdings]


def _holder(holder: dict | None) -> dict:
    holder = holder or {}
    return {"relationship": holder.get("relationship", "person"), "name": holder.get("name"),
            "organisation": holder.get("organisation"), "contact": holder.get("contact")}


def _priorities(incoming: list[dict], existing: list[dict], at: datetime) -> list[dict]:
    """Stamp priorities; one re-sent unchanged keeps the time it was first recorded."""
    held = {p["id"]: p for p in existing}
    out = []
    for p in stamp_priorities(incoming, at):
        old = held.get(p["id"])
        same = old is not None and all(old.get(k) == p[k] for k in ("text", "category", "expressed_by",
                                                                     "rank", "status"))
        supplied = any(str(q.get("id")) == p["id"] and q.get("recorded_at") for q in incoming)
        if same and not supplied:
            p["recorded_at"] = old["recorded_at"]
        out.append(p)
    return out


def _unprocessable(errors: dict[str, list[str]]) -> Problem:
    rules = [m for messages in errors.values() for m in messages]
    return Problem(422, "Unprocessable Content", " ".join(rules), errors)


def check_rules(content: dict, status: str, change: dict | None = None) -> None:
    """The rules a budget's money keeps after every change; 422 naming each one broken."""
    errors: dict[str, list[str]] = {}
    if sum(h["pence"] for h in content["holdings"]) != content["annual_pence"]:
        errors["holdings"] = [holdings_message(content["holdings"], content["annual_pence"])]
    spent = allocated(content["line_items"])
    if status in AGREED_STATES and spent > content["annual_pence"]:
        errors.setdefault("line_items", []).append(
            f"The line items cost {spent} pence a year, more than the budget's {content['annual_pence']} "
            f"(rule: {RULE_WITHIN}).")
    known = {p["id"] for p in content["priorities"]}
    held = {h["type"] for h in content["holdings"]}
    for n, item in enumerate(content["line_items"]):
        unknown = [p for p in item["priority_ids"] if p not in known]
        if unknown:
            errors.setdefault(f"line_items.{n}.priority_ids", []).append(
                f"Line item '{item['description']}' serves priorities that are not among this budget's: "
                f"{', '.join(unknown)} (rule: {RULE_PRIORITIES}).")
        if item.get("paid_from") and item["paid_from"] not in held:
            errors.setdefault(f"line_items.{n}.paid_from", []).append(
                f"Line item '{item['description']}' is paid from the {item['paid_from']} holding, which "
                "this budget does not have (rule: paid_from_holding).")
    if change is not None and status in AGREED_STATES and not change.get("reason"):
        errors["change.reason"] = [f"The budget has been agreed with the person: say why it changes "
                                   f"(rule: {RULE_REASON})."]
    if errors:
        raise _unprocessable(errors)


def _load(session, budget_id: str, for_update: bool = False) -> Budget:
    return load_or_404(session, Budget, budget_id, "budget", for_update)


def _open_for_change(budget: Budget) -> None:
    if budget.status == "ended":
        raise Problem(409, "Conflict", "The budget has ended; an ended budget cannot change.")


def _commit(session, budget: Budget, before: dict, type_: str, reason=None, effective_from=None,
            effective_to=None) -> dict:
    """Bump the version and write the event describing the change; return the change."""
    change = diff(before, _view(budget), reason, _day(effective_from), _day(effective_to))
    budget.version += 1
    budget.updated_at = now()
    session.flush()
    _emit(session, budget, type_, change)
    return change


def _transition(budget: Budget, action: str) -> None:
    try:
        budget.transition(action)
    except IllegalTransition as exc:
        raise Problem(409, "Conflict", str(exc))


# -- budgets -------------------------------------------------------------------------------
@bp.route("", methods=["POST"])
@requires("budgets:write")
@bp.arguments(BudgetCreateSchema)
@bp.response(201, BudgetSchema)
def create_budget(body):
    db = ctx().db
    try:
        with db.session() as session:
            stored = idempotency.replay(session, idempotency_keys)
            if stored is not None:
                return stored
            at = now()
            caller = service_caller()
            content = {
                "kind": body["kind"], "annual_pence": body["annual_pence"], "currency": body["currency"],
                "holdings": _holdings(body["holdings"]),
                "priorities": stamp_priorities(body["priorities"], at),
                "line_items": [_line_item(i) for i in body["line_items"]],
                "holder": _holder(body["holder"]), "care_coordinator": body["care_coordinator"],
                "next_review_date": _day(body["next_review_date"]),
                "started_on": None, "review": None, "suspension": None, "ended": None,
            }
            ids = [i["id"] for i in content["line_items"]]
            if len(ids) != len(set(ids)):
                raise _unprocessable({"line_items": ["Two line items have the same id."]})
            check_rules(content, "requested")
            budget = Budget(id=str(uuid.uuid4()), nhs_number=body["nhs_number"], plan_id=str(body["plan_id"]),
                            status="requested", version=1, content=content, created_by=caller.client_id,
                            created_at=at, updated_at=at)
            session.add(budget)
            session.flush()
            change = diff({"status": None, "line_items": []}, {"status": "requested", "line_items": []},
                          None, None, None)
            change["line_items"]["added"] = content["line_items"]
            change["summary"] = "budget requested" + (
                f" with {len(ids)} line item{'s' if len(ids) != 1 else ''}" if ids else "")
            _emit(session, budget, "budget.created", change)
            payload = budget_json(budget)
            idempotency.remember(session, idempotency_keys, payload, 201)
    except IntegrityError:
        with db.session() as session:  # lost a race on the same Idempotency-Key
            stored = idempotency.replay(session, idempotency_keys)
        if stored is None:
            raise
        return stored
    return with_etag(payload, 201, {"Location": f"/v1/budgets/{budget.id}"})


@bp.route("", methods=["GET"])
@requires("budgets:read")
@bp.arguments(BudgetListQuery, location="query")
@bp.response(200, BudgetListSchema)
def list_budgets(query):
    stmt = select(Budget).where(Budget.nhs_number == query["nhs_number"])
    if query["plan_id"]:
        stmt = stmt.where(Budget.plan_id == str(query["plan_id"]))
    if query["status"]:
        stmt = stmt.where(Budget.status == query["status"])
    with ctx().db.session() as session:
        rows, next_cursor = keyset_page(session, stmt, Budget, query["limit"], query["cursor"])
        return {"items": [budget_json(b) for b in rows], "next_cursor": next_cursor}


@bp.route("/<budget_id>", methods=["GET"])
@requires("budgets:read")
@bp.response(200, BudgetSchema)
def get_budget(budget_id):
    with ctx().db.session() as session:
        return with_etag(budget_json(_load(session, budget_id)))


@bp.route("/<budget_id>", methods=["PATCH"])
@requires("budgets:write")
@bp.arguments(BudgetPatchSchema)
@bp.response(200, BudgetSchema)
def patch_budget(body, budget_id):
    change = body.pop("change")
    with ctx().db.session() as session:
        budget = _load(session, budget_id, for_update=True)
        check_if_match(budget.version)
        _open_for_change(budget)
        before = _view(budget)
        content = copy.deepcopy(budget.content)
        for key in ("kind", "annual_pence", "care_coordinator"):
            if key in body:
                content[key] = body[key]
        if "holdings" in body:
            content["holdings"] = _holdings(body["holdings"])
        if "holder" in body:
            content["holder"] = _holder(body["holder"])
        if "next_review_date" in body:
            content["next_review_date"] = _day(body["next_review_date"])
        if "priorities" in body:
            content["priorities"] = _priorities(body["priorities"], content["priorities"], now())
        check_rules(content, budget.status, change)
        if "plan_id" in body:
            budget.plan_id = str(body["plan_id"])
        budget.content = content
        if _view(budget) == before:  # nothing actually differs: no new version, no event
            return with_etag(budget_json(budget))
        _commit(session, budget, before, "budget.changed", **change)
        return with_etag(budget_json(budget))


# -- life cycle ----------------------------------------------------------------------------
def _life(budget_id: str, action: str, type_: str, apply=None, reason=None, effective_from=None,
          effective_to=None):
    with ctx().db.session() as session:
        budget = _load(session, budget_id, for_update=True)
        check_if_match(budget.version)
        before = _view(budget)
        from_status = budget.status
        _transition(budget, action)
        content = copy.deepcopy(budget.content)
        if apply is not None:
            apply(budget, content, from_status)
        budget.content = content
        _commit(session, budget, before, type_, reason, effective_from, effective_to)
        return with_etag(budget_json(budget))


@bp.route("/<budget_id>/start-planning", methods=["POST"])
@requires("budgets:write")
@bp.arguments(StartPlanningSchema)
@bp.response(200, BudgetSchema)
def start_planning(body, budget_id):
    """requested → planning: support planning with the person begins."""
    def apply(budget, content, _from):
        if body["care_coordinator"]:
            content["care_coordinator"] = body["care_coordinator"]
    return _life(budget_id, "start_planning", "budget.planning-started", apply, reason=body["note"])


@bp.route("/<budget_id>/agree", methods=["POST"])
@requires("budgets:write")
@bp.arguments(AgreeSchema)
@bp.response(200, BudgetSchema)
def agree_budget(body, budget_id):
    """planning → agreed: the person and the professional agree how the money meets their priorities."""
    def apply(budget, content, _from):
        problems = []
        if not content["priorities"]:
            problems.append("it records nothing that matters to the person (priorities is empty)")
        if not content["line_items"]:
            problems.append("it says nothing about what the money pays for (line_items is empty)")
        spent = allocated(content["line_items"])
        if spent > content["annual_pence"]:
            problems.append(f"its line items cost {spent} pence a year, more than its {content['annual_pence']} "
                            f"(rule: {RULE_WITHIN})")
        if problems:
            raise Problem(409, "Conflict", "The budget cannot be agreed yet: " + "; ".join(problems) + ".")
        budget.agreed_by = body["agreed_by"]
        budget.person_agreed = body["person_agreed"]
        budget.agreed_at = now()
        if body["next_review_date"]:
            content["next_review_date"] = _day(body["next_review_date"])
    return _life(budget_id, "agree", "budget.agreed", apply)


@bp.route("/<budget_id>/activate", methods=["POST"])
@requires("budgets:write")
@bp.arguments(ActivateSchema)
@bp.response(200, BudgetSchema)
def activate_budget(body, budget_id):
    """agreed → active: the money starts to flow."""
    start = _day(body["start_date"]) or _today()

    def apply(budget, content, _from):
        content["started_on"] = start
    return _life(budget_id, "activate", "budget.activated", apply, effective_from=start)


@bp.route("/<budget_id>/review", methods=["POST"])
@requires("budgets:write")
@bp.arguments(ReviewSchema)
@bp.response(200, BudgetSchema)
def review_budget(body, budget_id):
    """``action: start`` (active → under_review) or ``action: complete`` (under_review → active)."""
    caller = service_caller()
    if body["action"] == "start":
        def apply(budget, content, _from):
            content["review"] = {"started_at": iso(now()), "started_by": caller.name or caller.client_id,
                                 "reason": body["reason"], "completed_at": None, "outcome": None}
        return _life(budget_id, "start_review", "budget.review-started", apply, reason=body["reason"])

    def complete(budget, content, _from):
        review = dict(content.get("review") or {})
        review.update(completed_at=iso(now()), completed_by=caller.name or caller.client_id,
                      outcome=body["outcome"])
        content["review"] = review
        if body["next_review_date"]:
            content["next_review_date"] = _day(body["next_review_date"])
    return _life(budget_id, "complete_review", "budget.reviewed", complete, reason=body["outcome"])


@bp.route("/<budget_id>/suspend", methods=["POST"])
@requires("budgets:write")
@bp.arguments(SuspendSchema)
@bp.response(200, BudgetSchema)
def suspend_budget(body, budget_id):
    """active or under_review → suspended, with the reason and from when (and until when, if known)."""
    start = _day(body["effective_from"]) or _today()

    def apply(budget, content, from_status):
        content["suspension"] = {"reason": body["reason"], "effective_from": start,
                                 "effective_to": _day(body["effective_to"]), "suspended_at": iso(now()),
                                 "from_status": from_status}
    return _life(budget_id, "suspend", "budget.suspended", apply, body["reason"], start, body["effective_to"])


@bp.route("/<budget_id>/resume", methods=["POST"])
@requires("budgets:write")
@bp.arguments(ResumeSchema)
@bp.response(200, BudgetSchema)
def resume_budget(body, budget_id):
    """suspended → active."""
    start = _day(body["effective_from"]) or _today()

    def apply(budget, content, _from):
        content["suspension"] = None
    return _life(budget_id, "resume", "budget.resumed", apply, body["reason"], start)


@bp.route("/<budget_id>/end", methods=["POST"])
@requires("budgets:write")
@bp.arguments(EndSchema)
@bp.response(200, BudgetSchema)
def end_budget(body, budget_id):
    """Any state but ended → ended (final), with the reason and the date it ends."""
    end = _day(body["effective_from"]) or _today()

    def apply(budget, content, from_status):
        content["ended"] = {"reason": body["reason"], "effective_from": end, "ended_at": iso(now()),
                            "from_status": from_status}
    return _life(budget_id, "end", "budget.ended", apply, body["reason"], end)


# -- line items ----------------------------------------------------------------------------
def _find_item(content: dict, item_id: str) -> int:
    for n, item in enumerate(content["line_items"]):
        if item["id"] == item_id:
            return n
    raise Problem(404, "Not Found", "No such line item in this budget.")


def _item_change(session, budget: Budget, before: dict, content: dict, change: dict, index: int | None):
    """Check the rules on the changed content (errors name the item's own fields), then commit."""
    try:
        check_rules(content, budget.status, change)
    except Problem as problem:
        if index is not None and problem.errors:
            prefix = f"line_items.{index}."
            problem.errors = {k.removeprefix(prefix): v for k, v in problem.errors.items()}
        raise
    budget.content = content
    return _commit(session, budget, before, "budget.changed", **change)


@bp.route("/<budget_id>/line-items", methods=["GET"])
@requires("budgets:read")
@bp.response(200, LineItemListSchema)
def list_line_items(budget_id):
    with ctx().db.session() as session:
        budget = _load(session, budget_id)
        return with_etag({"budget_id": budget.id, "nhs_number": budget.nhs_number, "version": budget.version,
                          "items": budget.content["line_items"]})


@bp.route("/<budget_id>/line-items", methods=["POST"])
@requires("budgets:write")
@bp.arguments(LineItemCreateSchema)
@bp.response(201, BudgetSchema)
def add_line_item(body, budget_id):
    change = body.pop("change")
    db = ctx().db
    try:
        with db.session() as session:
            stored = idempotency.replay(session, idempotency_keys)
            if stored is not None:
                return stored
            budget = _load(session, budget_id, for_update=True)
            check_if_match(budget.version)
            _open_for_change(budget)
            before = _view(budget)
            content = copy.deepcopy(budget.content)
            item = _line_item(body)
            if any(i["id"] == item["id"] for i in content["line_items"]):
                raise _unprocessable({"id": ["This budget already has a line item with this id."]})
            content["line_items"].append(item)
            _item_change(session, budget, before, content, change, len(content["line_items"]) - 1)
            payload = budget_json(budget)
            idempotency.remember(session, idempotency_keys, payload, 201)
    except IntegrityError:
        with db.session() as session:
            stored = idempotency.replay(session, idempotency_keys)
        if stored is None:
            raise
        return stored
    return with_etag(payload, 201, {"Location": f"/v1/budgets/{budget.id}/line-items/{item['id']}"})


@bp.route("/<budget_id>/line-items/<item_id>", methods=["GET"])
@requires("budgets:read")
def get_line_item(budget_id, item_id):
    with ctx().db.session() as session:
        budget = _load(session, budget_id)
        item = budget.content["line_items"][_find_item(budget.content, item_id)]
        return with_etag(dict(item, budget_id=budget.id, nhs_number=budget.nhs_number, version=budget.version))


@bp.route("/<budget_id>/line-items/<item_id>", methods=["PATCH"])
@requires("budgets:write")
@bp.arguments(LineItemPatchSchema)
@bp.response(200, BudgetSchema)
def patch_line_item(body, budget_id, item_id):
    change = body.pop("change")
    with ctx().db.session() as session:
        budget = _load(session, budget_id, for_update=True)
        check_if_match(budget.version)
        _open_for_change(budget)
        before = _view(budget)
        content = copy.deepcopy(budget.content)
        n = _find_item(content, item_id)
        merged = dict(content["line_items"][n])
        merged.update({k: _day(v) if k.startswith("effective_") else v for k, v in body.items()})
        if merged["effective_from"] and merged["effective_to"] and merged["effective_to"] < merged["effective_from"]:
            raise _unprocessable({"effective_to": ["effective_to cannot be before effective_from."]})
        content["line_items"][n] = _line_item(merged, item_id)
        if content["line_items"][n] == budget.content["line_items"][n]:
            return with_etag(budget_json(budget))
        _item_change(session, budget, before, content, change, n)
        return with_etag(budget_json(budget))


@bp.route("/<budget_id>/line-items/<item_id>", methods=["DELETE"])
@requires("budgets:write")
@bp.arguments(ChangeQuery, location="query")
@bp.response(200, BudgetSchema)
def delete_line_item(change, budget_id, item_id):
    """Remove a line item; the reason and dates of the change go in the query (?reason=…)."""
    if change["effective_from"] and change["effective_to"] and change["effective_to"] < change["effective_from"]:
        raise _unprocessable({"effective_to": ["effective_to cannot be before effective_from."]})
    with ctx().db.session() as session:
        budget = _load(session, budget_id, for_update=True)
        check_if_match(budget.version)
        _open_for_change(budget)
        before = _view(budget)
        content = copy.deepcopy(budget.content)
        del content["line_items"][_find_item(content, item_id)]
        _item_change(session, budget, before, content, change, None)
        return with_etag(budget_json(budget))


# -- history -------------------------------------------------------------------------------
@bp.route("/<budget_id>/changes", methods=["GET"])
@requires("budgets:read")
@bp.response(200, ChangeHistorySchema)
def budget_changes(budget_id):
    """Every event of this budget, oldest first: what changed, why, from when, and who changed it."""
    with ctx().db.session() as session:
        budget = _load(session, budget_id)
        rows = session.execute(select(outbox.c.body).where(outbox.c.aggregate_id == budget.id)
                               .order_by(outbox.c.id)).scalars().all()
    items = []
    for body in rows:
        event = json.loads(body)
        items.append({"version": event["aggregateversion"], "type": event["type"], "time": event["time"],
                      "event_id": event["id"], "status": event["data"]["status"],
                      "change": event["data"]["change"], "changed_by": event["data"]["changed_by"]})
    return {"budget_id": budget.id, "nhs_number": budget.nhs_number, "items": items}
