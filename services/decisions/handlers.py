"""The commands on shared decisions: each runs in the caller's transaction through the kernel's
write recipe (:class:`coproduction.aggregate.Aggregate`) and returns the decision and its event.
"""
from __future__ import annotations

import uuid
from datetime import datetime

from flask import request
from sqlalchemy import select
from sqlalchemy.orm import Session

from coproduction.aggregate import Aggregate, changed_by
from coproduction.auth import service_caller
from coproduction.events import iso, now, stamp_priorities
from coproduction.http import Problem, check_if_match

from . import domain
from .models import Decision, outbox


def decision_json(d: Decision) -> dict:
    """The decision as the API shows it and its events carry it."""
    c = d.content
    return {
        "id": d.id, "version": d.version, "status": d.status, "nhs_number": d.nhs_number,
        "setting": d.setting, "encounter_id": d.encounter_id, "question": c["question"],
        "priorities": c["priorities"], "options": c["options"], "decision_aids": c["decision_aids"],
        "lead_clinician": c.get("lead_clinician"),
        "outcome": c.get("outcome"), "deferral": c.get("deferral"), "deferrals": c.get("deferrals", []),
        "follow_up": domain.follow_up(c.get("follow_up")),
        "supersedes": d.supersedes, "superseded_by": d.superseded_by,
        "supersede_reason": c.get("supersede_reason"),
        "created_at": iso(d.created_at), "updated_at": iso(d.updated_at),
    }


def event_data(d: Decision) -> dict:
    body = decision_json(d)
    data = {k: body[k] for k in ("status", "setting", "encounter_id", "question", "priorities", "options",
                                 "decision_aids", "lead_clinician", "outcome", "deferral", "follow_up",
                                 "supersedes", "superseded_by", "supersede_reason")}
    return dict(data, decision_id=d.id, opened_at=body["created_at"], changed_by=changed_by())


DECISIONS = Aggregate("decisions", Decision, "decision", domain.MACHINE, outbox, event_data)


def _new_decision(body: dict, nhs_number: str, at: datetime) -> Decision:
    return Decision(id=str(uuid.uuid4()), nhs_number=nhs_number, status="opened", version=1,
                    setting=body["setting"], encounter_id=body.get("encounter_id"),
                    content=domain.new_content(body, at), created_by=service_caller().client_id,
                    created_at=at, updated_at=at)


def _supersede(session: Session, old: Decision, new: Decision, reason: str | None, at: datetime) -> dict:
    """Mark ``old`` superseded by ``new`` (both in this session); emit both events, return new's."""
    DECISIONS.move(old, "supersede")
    old.superseded_by = new.id
    old.content = dict(old.content, supersede_reason=reason)
    DECISIONS.bump(old, at)
    new.supersedes = old.id
    new.content = dict(new.content, supersede_reason=reason)
    session.add(new)
    event = DECISIONS.emit(session, new, "decision.opened")
    DECISIONS.emit(session, old, "decision.superseded")
    return event


def _superseded_on_open(session: Session, decision_id: str, nhs_number: str) -> Decision:
    """The decision a create names in ``supersedes``, locked; If-Match, when sent, is its ETag."""
    old = session.execute(select(Decision).where(Decision.id == decision_id)
                          .with_for_update()).scalar_one_or_none()
    if old is None or old.nhs_number != nhs_number:
        raise Problem(422, "Unprocessable Content", "Some fields are not valid: supersedes",
                      errors={"supersedes": ["No decision of this person has this id."]})
    if request.headers.get("If-Match"):
        check_if_match(old.version)
    return old


def open_decision(session: Session, body: dict) -> tuple[Decision, dict]:
    """Open a shared decision, superseding an earlier one of the same person if it names one."""
    at = now()
    decision = _new_decision(body, body["nhs_number"], at)
    if body.get("supersedes"):
        old = _superseded_on_open(session, str(body["supersedes"]), body["nhs_number"])
        return decision, _supersede(session, old, decision, body.get("supersede_reason"), at)
    session.add(decision)
    return decision, DECISIONS.emit(session, decision, "decision.opened")


def change(session: Session, decision_id: str, body: dict) -> tuple[Decision, dict]:
    """Change an opened or deferred decision (a recorded one is kept as made: supersede it)."""
    def apply(d: Decision, at: datetime) -> None:
        content = dict(d.content)
        if "setting" in body:
            d.setting = body["setting"]
        if "encounter_id" in body:
            d.encounter_id = body["encounter_id"]
        for name in ("question", "lead_clinician"):
            if name in body:
                content[name] = body[name]
        if "priorities" in body:
            content["priorities"] = stamp_priorities(body["priorities"], at)
        if "options" in body:
            content["options"] = domain.options(body["options"])
        if "decision_aids" in body:
            content["decision_aids"] = domain.aids(body["decision_aids"])
        d.content = content
    return DECISIONS.change(session, decision_id, "update", "decision.updated", apply)


def record(session: Session, decision_id: str, body: dict) -> tuple[Decision, dict]:
    """Record the option chosen together, the person's reason and the clinician."""
    def apply(d: Decision, at: datetime) -> None:
        chosen = domain.chosen_option(d.content, str(body["chosen_option_id"]))
        content = dict(d.content)
        content["outcome"] = {
            "chosen_option_id": chosen["id"], "chosen_option_label": chosen["label"],
            "chosen_is_no_change": chosen["is_no_change"], "persons_reason": body["persons_reason"],
            "clinician": body["clinician"], "others_involved": body["others_involved"],
            "recorded_at": iso(at), "recorded_by": changed_by(),
        }
        content["deferral"] = None
        if body.get("follow_up"):
            content["follow_up"] = domain.merge_follow_up(content.get("follow_up"), body["follow_up"])
        d.content = content
    return DECISIONS.change(session, decision_id, "record", "decision.recorded", apply)


def defer(session: Session, decision_id: str, body: dict) -> tuple[Decision, dict]:
    """Put the decision off (the person wants time, more information, or someone with them)."""
    def apply(d: Decision, at: datetime) -> None:
        deferral = {"reason": body["reason"], "revisit_by": body["revisit_by"].isoformat(),
                    "clinician": body.get("clinician"), "deferred_at": iso(at)}
        content = dict(d.content)
        content["deferral"] = deferral
        content["deferrals"] = [*content.get("deferrals", []), deferral]
        content["follow_up"] = dict(domain.follow_up(content.get("follow_up")),
                                    revisit_by=deferral["revisit_by"])
        d.content = content
    return DECISIONS.change(session, decision_id, "defer", "decision.deferred", apply)


def follow_up(session: Session, decision_id: str, body: dict) -> tuple[Decision, dict]:
    """Record the follow-up: summary given, letter sent (to whom), when to revisit."""
    domain.check_follow_up(body)

    def apply(d: Decision, _at: datetime) -> None:
        d.content = dict(d.content, follow_up=domain.merge_follow_up(d.content.get("follow_up"), body))
    return DECISIONS.change(session, decision_id, "follow_up", "decision.followed-up", apply)


def supersede(session: Session, decision_id: str, body: dict) -> tuple[Decision, dict]:
    """Revisit a decision: a new decision replaces it, carrying over the fields not sent (its
    options keep their ids). Returns the new decision and its event."""
    old = DECISIONS.lock(session, decision_id)
    if old.status == "superseded":
        DECISIONS.move(old, "supersede")  # 409 with the reason
    at = now()
    c = old.content
    merged = {
        "setting": body.get("setting", old.setting),
        "encounter_id": body["encounter_id"] if "encounter_id" in body else old.encounter_id,
        "question": body.get("question", c["question"]),
        "lead_clinician": body["lead_clinician"] if "lead_clinician" in body else c.get("lead_clinician"),
        "decision_aids": body.get("decision_aids", c["decision_aids"]),
    }
    new = _new_decision(dict(merged, options=body.get("options", c["options"])), old.nhs_number, at)
    if "priorities" in body:
        new.content["priorities"] = stamp_priorities(body["priorities"], at)
    else:
        new.content["priorities"] = [dict(p) for p in c["priorities"]]
    return new, _supersede(session, old, new, body["reason"], at)
