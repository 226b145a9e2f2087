"""The rules of a care and support plan: its states, its goals' lifecycle, and how sent fields
become the plan's stored content. Pure: no HTTP, no database."""
from __future__ import annotations

import uuid
from datetime import date, datetime

from coproduction.aggregate import StateMachine
from coproduction.events import iso, stamp_priorities
from coproduction.http import Problem

#: state -> {action: next state}. A draft is edited in place (each edit a new version, plan.revised);
#: an agreed plan is revised (a new version, still active); an on-hold plan may have its review
#: date, goals and actions brought up to date before it resumes. Completed and revoked are final.
TRANSITIONS = {
    "draft": {"revise": "draft", "agree": "active", "revoke": "revoked"},
    "active": {"revise": "active", "hold": "on_hold", "close": "completed", "revoke": "revoked"},
    "on_hold": {"revise": "on_hold", "resume": "active", "close": "completed", "revoke": "revoked"},
    "completed": {},
    "revoked": {},
}

#: how each action reads in a sentence ("A draft plan cannot be closed")
DONE = {"agree": "agreed", "revise": "revised", "hold": "put on hold", "resume": "resumed",
        "close": "closed", "revoke": "revoked"}

#: FHIR Goal.lifecycleStatus: which changes make sense (anything may become entered-in-error)
GOAL_TRANSITIONS = {
    "proposed": {"planned", "accepted", "active", "rejected", "cancelled"},
    "planned": {"accepted", "active", "on-hold", "cancelled"},
    "accepted": {"active", "on-hold", "cancelled"},
    "active": {"on-hold", "completed", "cancelled"},
    "on-hold": {"active", "completed", "cancelled"},
    "completed": {"active"},  # re-opened, e.g. a weight goal that slipped
    "cancelled": set(),
    "rejected": set(),
    "entered-in-error": set(),
}

#: the fields of a plan's content, in the order a revision reports them
CONTENT_FIELDS = ("conditions", "priorities", "goals", "actions", "next_review_date", "results",
                  "results_shared_at", "care_coordinator")

#: a new plan's content before the sent fields are applied
EMPTY_CONTENT = {"conditions": [], "priorities": [], "goals": [], "actions": [], "results": [],
                 "next_review_date": None, "results_shared_at": None, "care_coordinator": None,
                 "status_reason": None, "closed_at": None}


def _refusal(status: str, action: str, possible: tuple[str, ...]) -> str:
    state = status.replace("_", " ")
    return (f"A{'n' if state[0] in 'aeiou' else ''} {state} plan cannot be {DONE[action]}"
            + (f"; a {state} plan can only be {', '.join(DONE[a] for a in possible)}."
               if possible else f"; {state} is final."))


MACHINE = StateMachine(TRANSITIONS, _refusal)


def goal_transition_problem(goal_id: str, old: str, new: str) -> str | None:
    """Why a goal may not go from lifecycle ``old`` to ``new``, or None when it may."""
    if old == new or new == "entered-in-error":
        return None
    allowed = GOAL_TRANSITIONS.get(old, set())
    if new in allowed:
        return None
    return (f"Goal {goal_id} is {old} and cannot become {new}"
            + (f"; from {old} it can become {', '.join(sorted(allowed))} or entered-in-error." if allowed
               else f"; {old} is final (only entered-in-error is allowed)."))


def check_agreeable(content: dict) -> None:
    if not content["priorities"]:
        raise Problem(409, "Conflict", "A plan can only be agreed once it records at least one "
                      "thing that matters to the person (priorities is empty).")


# -- normalising what was sent into what is stored ----------------------------------------------
def plain(value):
    """Sent values as JSON stores them: dates as ISO text, UUIDs as strings."""
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def _with_ids(items: list[dict], field: str) -> list[dict]:
    out, seen, errors = [], set(), {}
    for i, item in enumerate(items):
        item = plain(item)
        item["id"] = item.get("id") or str(uuid.uuid4())
        if item["id"] in seen:
            errors[f"{field}.{i}.id"] = ["The same id appears twice in this list."]
        seen.add(item["id"])
        out.append(item)
    if errors:
        raise Problem(422, "Unprocessable Content", "Some fields are not valid: " + ", ".join(errors),
                      errors=errors)
    return out


def _goals(goals: list[dict], previous: list[dict], today: str) -> list[dict]:
    """Stamp status_date and achieved_on; refuse lifecycle changes FHIR's Goal does not allow (409)."""
    before = {g["id"]: g for g in previous}
    out, problems = [], []
    for g in _with_ids(goals, "goals"):
        old = before.get(g["id"])
        if old is not None:
            problem = goal_transition_problem(g["id"], old["lifecycle_status"], g["lifecycle_status"])
            if problem:
                problems.append(problem)
        moved = old is None or (old["lifecycle_status"], old["achievement_status"]) != (
            g["lifecycle_status"], g["achievement_status"])
        g["status_date"] = today if moved else old.get("status_date")
        achieved = g["achievement_status"] in ("achieved", "sustaining")
        g["achieved_on"] = ((old.get("achieved_on") if old is not None and old.get("achieved_on") else today)
                            if achieved else None)
        out.append(g)
    if problems:
        raise Problem(409, "Conflict", " ".join(problems))
    return out


def _actions(actions: list[dict], previous: list[dict], today: str) -> list[dict]:
    before = {a["id"]: a for a in previous}
    out = []
    for a in _with_ids(actions, "actions"):
        old = before.get(a["id"])
        if a["status"] == "done":
            a["completed_on"] = old["completed_on"] if old is not None and old.get("completed_on") else today
        else:
            a["completed_on"] = None
        out.append(a)
    return out


def _priorities(priorities: list[dict], previous: list[dict], at: datetime) -> list[dict]:
    """Stamp ids and recorded times; a priority kept by id keeps its first recorded time."""
    recorded = {p["id"]: p.get("recorded_at") for p in previous}
    stamped = stamp_priorities(priorities, at)
    for sent, p in zip(priorities, stamped):
        if sent.get("recorded_at") is None and recorded.get(p["id"]):
            p["recorded_at"] = recorded[p["id"]]
    ids = [p["id"] for p in stamped]
    dupes = {i for i in ids if ids.count(i) > 1}
    if dupes:
        raise Problem(422, "Unprocessable Content", "The same priority id appears twice.",
                      errors={f"priorities.{ids.index(d)}.id": ["The same id appears twice in this list."]
                              for d in dupes})
    return stamped


def _check_goal_priorities(content: dict) -> None:
    known = {p["id"] for p in content["priorities"]}
    errors = {}
    for i, g in enumerate(content["goals"]):
        missing = [p for p in g.get("priority_ids", []) if p not in known]
        if missing:
            errors[f"goals.{i}.priority_ids"] = [
                f"Not a priority of this plan: {', '.join(missing)}."]
    if errors:
        raise Problem(422, "Unprocessable Content", "Some fields are not valid: " + ", ".join(errors),
                      errors=errors)


def plan_content(body: dict, previous: dict, at: datetime) -> dict:
    """The plan's new content from the sent fields (all of them on create, some on revise)."""
    today = at.date().isoformat()
    content = dict(previous)
    if "conditions" in body:
        content["conditions"] = list(body["conditions"])
    if "priorities" in body:
        content["priorities"] = _priorities(body["priorities"], previous.get("priorities", []), at)
    if "goals" in body:
        content["goals"] = _goals(body["goals"], previous.get("goals", []), today)
    if "actions" in body:
        content["actions"] = _actions(body["actions"], previous.get("actions", []), today)
    if "results" in body:
        content["results"] = _with_ids(body["results"], "results")
    if "next_review_date" in body:
        content["next_review_date"] = plain(body["next_review_date"])
    if "results_shared_at" in body:
        content["results_shared_at"] = iso(body["results_shared_at"]) if body["results_shared_at"] else None
    if "care_coordinator" in body:
        content["care_coordinator"] = body["care_coordinator"]
    _check_goal_priorities(content)
    return content


def changed_fields(old: dict, new: dict) -> list[str]:
    return [f for f in CONTENT_FIELDS if new.get(f) != old.get(f)]


def find(items: list[dict], item_id: str, what: str) -> int:
    for i, item in enumerate(items):
        if item["id"] == item_id:
            return i
    raise Problem(404, "Not Found", f"This plan has no {what} {item_id}.")
