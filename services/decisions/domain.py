"""The rules of a shared decision: its states, and how sent options, aids and follow-ups become
its stored content. Pure: no HTTP, no database."""
from __future__ import annotations

import uuid
from datetime import datetime

from coproduction.aggregate import StateMachine
from coproduction.events import iso, stamp_priorities
from coproduction.http import Problem

from .schemas import FOLLOW_UP_FIELDS, parse_natural_frequency

#: state -> {action: next state}. A decision is made (recorded) or put off (deferred); revisiting
#: it later makes a new decision that supersedes it. A deferred decision may be deferred again or
#: made. Only a superseded decision is final; a recorded one is never recorded twice.
TRANSITIONS = {
    "opened": {"record": "recorded", "defer": "deferred", "supersede": "superseded", "update": "opened",
               "follow_up": "opened"},
    "deferred": {"record": "recorded", "defer": "deferred", "supersede": "superseded", "update": "deferred",
                 "follow_up": "deferred"},
    "recorded": {"supersede": "superseded", "follow_up": "recorded"},
    "superseded": {},
}
WHY_NOT = {
    ("recorded", "record"): "it was already recorded; to revisit it, supersede it with a new decision",
    ("recorded", "defer"): "it was already recorded; to revisit it, supersede it with a new decision",
    ("recorded", "update"): "a recorded decision is kept as it was made; supersede it to change it",
    ("superseded", "record"): "it was superseded by a newer decision; record that one instead",
    ("superseded", "defer"): "it was superseded by a newer decision",
    ("superseded", "supersede"): "it was already superseded",
}
VERBS = {"record": "recorded", "defer": "deferred", "supersede": "superseded", "update": "changed",
         "follow_up": "followed up"}


def _refusal(status: str, action: str, possible: tuple[str, ...]) -> str:
    reason = WHY_NOT.get((status, action))
    can = [a for a in possible if a not in ("update", "follow_up")]
    return (f"A {status} decision cannot be {VERBS.get(action, action)}"
            + (f": {reason}." if reason else
               (f"; from {status} it can only be: {', '.join(can)}." if can else f"; {status} is final.")))


MACHINE = StateMachine(TRANSITIONS, _refusal)


def jsonable(value):
    if isinstance(value, datetime):
        return iso(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def options(sent: list[dict]) -> list[dict]:
    """The options as stored: ids given, each risk's natural frequency read into numbers."""
    out = []
    for o in sent:
        risks = []
        for r in o.get("risks", []):
            count, out_of = parse_natural_frequency(r["natural_frequency"])
            risks.append({"text": r["text"], "natural_frequency": r["natural_frequency"], "count": count,
                          "out_of": out_of, "timeframe": r.get("timeframe")})
        out.append({"id": str(o.get("id") or uuid.uuid4()), "label": o["label"],
                    "description": o.get("description"), "is_no_change": bool(o.get("is_no_change")),
                    "benefits": list(o.get("benefits", [])), "risks": risks,
                    "consequences": list(o.get("consequences", []))})
    return out


def aids(sent: list[dict]) -> list[dict]:
    return [{k: jsonable(a.get(k)) for k in ("title", "url", "format", "source")} for a in sent]


def follow_up(stored: dict | None) -> dict:
    """Every follow-up field, None where nothing was recorded."""
    return {k: (stored or {}).get(k) for k in FOLLOW_UP_FIELDS}


def merge_follow_up(stored: dict | None, given: dict) -> dict:
    merged = follow_up(stored)
    for key, value in given.items():
        merged[key] = jsonable(value)
    return merged


def check_follow_up(given: dict) -> None:
    if not given:
        raise Problem(422, "Unprocessable Content", "Send at least one follow-up field.",
                      errors={"body": ["Send at least one of: " + ", ".join(FOLLOW_UP_FIELDS) + "."]})


def new_content(body: dict, at: datetime) -> dict:
    """A new decision's content from the sent fields."""
    return {
        "question": body["question"],
        "priorities": stamp_priorities(body.get("priorities", []), at),
        "options": options(body["options"]),
        "decision_aids": aids(body.get("decision_aids", [])),
        "lead_clinician": body.get("lead_clinician"),
        "outcome": None, "deferral": None, "deferrals": [], "follow_up": follow_up(None),
    }


def chosen_option(content: dict, option_id: str) -> dict:
    """The option recorded as chosen (422 when it is not one of the decision's)."""
    chosen = next((o for o in content["options"] if o["id"] == option_id), None)
    if chosen is None:
        labels = "; ".join(f"{o['id']} ({o['label']})" for o in content["options"])
        raise Problem(422, "Unprocessable Content", "Some fields are not valid: chosen_option_id",
                      errors={"chosen_option_id": [f"Not one of this decision's options: {labels}."]})
    return chosen
