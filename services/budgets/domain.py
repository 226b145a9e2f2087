"""The rules of a personal health budget: its life, its money, and what a change reports.

Pure functions of a budget's content and status: nothing here touches the database or HTTP
(a broken rule is raised as the 422 or 409 ``Problem`` the API answers with).
"""
from __future__ import annotations

import copy
import uuid
from datetime import date, datetime

from coproduction.aggregate import StateMachine
from coproduction.events import now, stamp_priorities
from coproduction.http import Problem

CURRENCY = "GBP"
HOLDING_TYPES = ("notional", "third_party", "direct_payment")
SECTORS = ("nhs", "local_authority", "voluntary", "private")
CATEGORIES = ("personal_assistant", "care_agency", "therapy", "equipment", "physical_activity",
              "weight_management", "transport", "course", "peer_support", "other")
#: what a personal health budget may never buy (NHS England guidance; the Care Act rules agree)
EXCLUDED_CATEGORIES = {
    "alcohol": "alcohol",
    "tobacco": "tobacco",
    "gambling": "gambling",
    "debt_repayment": "repaying debts",
    "illegal": "anything illegal",
    "emergency_care": "emergency or unplanned care (it stays with the NHS)",
    "gp_services": "GP (primary medical) services (they stay with the NHS)",
}
FREQUENCIES = {"one_off": 1, "weekly": 52, "fortnightly": 26, "four_weekly": 13, "monthly": 12,
               "quarterly": 4, "annual": 1}
KINDS = ("personal_health_budget", "personal_budget", "integrated_personal_budget")
HOLDER_RELATIONSHIPS = ("person", "representative", "nominee", "deputy", "organisation")
BUDGET_STATUSES = ("requested", "planning", "agreed", "active", "under_review", "suspended", "ended")
#: states in which the budget has been agreed with the person: a change then needs a reason
AGREED_STATES = ("agreed", "active", "under_review", "suspended")

#: state -> {action: next state}
TRANSITIONS = {
    "requested": {"start_planning": "planning", "end": "ended"},
    "planning": {"agree": "agreed", "end": "ended"},
    "agreed": {"activate": "active", "end": "ended"},
    "active": {"start_review": "under_review", "suspend": "suspended", "end": "ended"},
    "under_review": {"complete_review": "active", "suspend": "suspended", "end": "ended"},
    "suspended": {"resume": "active", "end": "ended"},
    "ended": {},
}
#: why an action is refused in a state where a reader might expect it to work
REASONS = {
    ("requested", "agree"): "A budget is agreed at the end of support planning: start planning first "
                            "(POST /v1/budgets/{id}/start-planning).",
    ("agreed", "suspend"): "Only a budget that is being spent (active or under review) can be suspended.",
    ("planning", "suspend"): "Only a budget that is being spent (active or under review) can be suspended.",
    ("requested", "suspend"): "Only a budget that is being spent (active or under review) can be suspended.",
    ("under_review", "resume"): "The budget is under review, not suspended; complete the review instead.",
    ("*", "resume"): "The budget is not suspended, so there is nothing to resume.",
    ("active", "complete_review"): "The budget is not under review; start a review first.",
    ("under_review", "start_review"): "The budget is already under review.",
    ("suspended", "start_review"): "A suspended budget must be resumed before it is reviewed.",
    ("agreed", "start_review"): "The budget is not in use yet: activate it before reviewing it.",
    ("active", "agree"): "The budget has already been agreed.",
    ("agreed", "agree"): "The budget has already been agreed.",
}
VERBS = {"start_planning": "start planning for", "agree": "agree", "activate": "activate",
         "start_review": "start a review of", "complete_review": "complete a review of",
         "suspend": "suspend", "resume": "resume", "end": "end"}

RULE_HOLDINGS = "holdings_add_up"
RULE_EXCLUDED = "excluded_category"
RULE_PLAN = "plan_required"
RULE_WITHIN = "within_budget"
RULE_REASON = "reason_required"
RULE_PRIORITIES = "serves_budget_priorities"

#: what a change reports "from → to" for (line items are reported item by item)
TRACKED = ("status", "plan_id", "kind", "annual_pence", "currency", "holdings", "priorities", "holder",
           "care_coordinator", "next_review_date", "started_on")
ITEM_FIELDS = ("description", "category", "sector", "pence", "frequency", "effective_from",
               "effective_to", "priority_ids", "provider", "paid_from")


def _refusal(status: str, action: str, _possible: tuple[str, ...]) -> str:
    """Why ``action`` is refused in ``status``: the reader's likely mistake, or what is possible."""
    if status == "ended":
        return "The budget has ended; an ended budget is final."
    reason = REASONS.get((status, action)) or REASONS.get(("*", action))
    if reason is not None:
        return reason
    state = status.replace("_", " ")
    article = "an" if state[0] in "aeiou" else "a"
    # in the order of TRANSITIONS (the budget's life), not alphabetical
    return (f"You cannot {VERBS.get(action, action)} {article} {state} budget; from {state} you can only "
            + " or ".join(f"{VERBS[a]} it" for a in TRANSITIONS[status]) + ".")


MACHINE = StateMachine(TRANSITIONS, _refusal)


def occurrences(item: dict) -> int:
    """How many times a line item is paid in a year: its frequency, or, for an item with both
    effective dates, how many times it falls within that period (at least once, at most a year's)."""
    per_year = FREQUENCIES.get(item.get("frequency") or "annual", 1)
    start, end = item.get("effective_from"), item.get("effective_to")
    if not (start and end) or per_year == 1:
        return per_year
    days = (date.fromisoformat(end) - date.fromisoformat(start)).days
    return max(1, min(per_year, round(days * per_year / 365)))


def annual_cost(item: dict) -> int:
    """What a line item costs within a year, in pence (12 weekly sessions cost 12, not 52)."""
    return item["pence"] * occurrences(item)


def allocated(line_items: list[dict]) -> int:
    return sum(annual_cost(i) for i in line_items)


def holdings_message(holdings: list[dict], annual_pence: int) -> str:
    total = sum(h["pence"] for h in holdings)
    parts = " + ".join(f"{h['pence']} ({h['type']})" for h in holdings) or "nothing"
    return (f"The holdings must add up to the annual amount: {parts} = {total} pence, but annual_pence "
            f"is {annual_pence} (rule: {RULE_HOLDINGS}).")


def day(value) -> str | None:
    """A date (or an ISO date already) as ISO text."""
    if value is None or isinstance(value, str):
        return value
    return value.isoformat()


def today() -> str:
    return now().date().isoformat()


# -- building content ----------------------------------------------------------------------
def line_item(body: dict, item_id: str | None = None) -> dict:
    item = {
        "id": item_id or str(body.get("id") or uuid.uuid4()),
        "description": body["description"], "category": body["category"], "sector": body["sector"],
        "pence": body["pence"], "frequency": body.get("frequency") or "annual",
        "effective_from": day(body.get("effective_from")), "effective_to": day(body.get("effective_to")),
        "priority_ids": [str(p) for p in body.get("priority_ids") or []],
        "provider": body.get("provider"), "paid_from": body.get("paid_from"),
    }
    item["annual_pence"] = annual_cost(item)
    return item


def holdings(incoming: list[dict]) -> list[dict]:
    return [{"type": h["type"], "pence": h["pence"], "managed_by": h.get("managed_by")} for h in incoming]


def holder(incoming: dict | None) -> dict:
    incoming = incoming or {}
    return {"relationship": incoming.get("relationship", "person"), "name": incoming.get("name"),
            "organisation": incoming.get("organisation"), "contact": incoming.get("contact")}


def priorities(incoming: list[dict], existing: list[dict], at: datetime) -> list[dict]:
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


def new_content(body: dict, at: datetime) -> dict:
    """The content of a budget just requested; 422 if two of its line items share an id."""
    content = {
        "kind": body["kind"], "annual_pence": body["annual_pence"], "currency": body["currency"],
        "holdings": holdings(body["holdings"]),
        "priorities": stamp_priorities(body["priorities"], at),
        "line_items": [line_item(i) for i in body["line_items"]],
        "holder": holder(body["holder"]), "care_coordinator": body["care_coordinator"],
        "next_review_date": day(body["next_review_date"]),
        "started_on": None, "review": None, "suspension": None, "ended": None,
    }
    ids = [i["id"] for i in content["line_items"]]
    if len(ids) != len(set(ids)):
        raise unprocessable({"line_items": ["Two line items have the same id."]})
    return content


def patched_content(content: dict, body: dict, at: datetime) -> dict:
    """A copy of ``content`` with the fields of a PATCH body applied."""
    content = copy.deepcopy(content)
    for key in ("kind", "annual_pence", "care_coordinator"):
        if key in body:
            content[key] = body[key]
    if "holdings" in body:
        content["holdings"] = holdings(body["holdings"])
    if "holder" in body:
        content["holder"] = holder(body["holder"])
    if "next_review_date" in body:
        content["next_review_date"] = day(body["next_review_date"])
    if "priorities" in body:
        content["priorities"] = priorities(body["priorities"], content["priorities"], at)
    return content


# -- checking content ----------------------------------------------------------------------
def unprocessable(errors: dict[str, list[str]]) -> Problem:
    rules = [m for messages in errors.values() for m in messages]
    return Problem(422, "Unprocessable Content", " ".join(rules), errors)


def check_dates(effective_from, effective_to) -> None:
    if effective_from and effective_to and effective_to < effective_from:
        raise unprocessable({"effective_to": ["effective_to cannot be before effective_from."]})


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
        raise unprocessable(errors)


def check_item_rules(content: dict, status: str, change: dict, index: int | None) -> None:
    """``check_rules`` for a change of one line item: its errors name the item's own fields."""
    try:
        check_rules(content, status, change)
    except Problem as problem:
        if index is not None and problem.errors:
            prefix = f"line_items.{index}."
            problem.errors = {k.removeprefix(prefix): v for k, v in problem.errors.items()}
        raise


def check_agreeable(content: dict) -> None:
    """A budget is agreed only once it says what matters and what the money pays for, within it."""
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


def check_open(status: str) -> None:
    if status == "ended":
        raise Problem(409, "Conflict", "The budget has ended; an ended budget cannot change.")


def find_item(content: dict, item_id: str) -> int:
    for n, item in enumerate(content["line_items"]):
        if item["id"] == item_id:
            return n
    raise Problem(404, "Not Found", "No such line item in this budget.")


# -- what a change reports -----------------------------------------------------------------
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
        "effective_from": effective_from or today(),
        "effective_to": effective_to,
    }


def creation_change(line_items: list[dict]) -> dict:
    """The change a new budget's first event reports: requested, with its line items."""
    change = diff({"status": None, "line_items": []}, {"status": "requested", "line_items": []},
                  None, None, None)
    change["line_items"]["added"] = line_items
    n = len(line_items)
    change["summary"] = "budget requested" + (f" with {n} line item{'s' if n != 1 else ''}" if n else "")
    return change
