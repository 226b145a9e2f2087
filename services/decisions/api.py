"""HTTP routes of the decisions service."""
from __future__ import annotations

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

from .models import Decision, IllegalTransition, idempotency_keys, outbox
from .schemas import (FOLLOW_UP_FIELDS, DecisionCreateSchema, DecisionListQuery, DecisionListSchema,
                      DecisionPatchSchema, DecisionSchema, DeferSchema, FollowUpSchema, RecordSchema,
                      SupersedeSchema, parse_natural_frequency)

bp = flask_smorest.Blueprint("decisions", __name__, url_prefix="/v1/decisions",
                             description="Shared decision-making (NICE NG197)")


# -- shapes -------------------------------------------------------------------------------------
def _jsonable(value):
    if isinstance(value, datetime):
        return iso(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def decision_json(d: Decision) -> dict:
    c = d.content
    return {
        "id": d.id, "version": d.version, "status": d.status, "nhs_number": d.nhs_number,
        "setting": d.setting, "encounter_id": d.encounter_id, "question": c["question"],
        "priorities": c["priorities"], "options": c["options"], "decision_aids": c["decision_aids"],
        "lead_clinician": c.get("lead_clinician"),
        "outcome": c.get("outcome"), "deferral": c.get("deferral"), "deferrals": c.get("deferrals", []),
        "follow_up": _follow_up(c.get("follow_up")),
        "supersedes": d.supersedes, "superseded_by": d.superseded_by,
        "supersede_reason": c.get("supersede_reason"),
        "created_at": iso(d.created_at), "updated_at": iso(d.updated_at),
    }


def _follow_up(stored: dict | None) -> dict:
    return {k: (stored or {}).get(k) for k in FOLLOW_UP_FIELDS}


def _changed_by() -> dict:
    caller = service_caller()
    return {"client": caller.client_id, "org": caller.org, "role": caller.role}


def _event_data(d: Decision) -> dict:
    body = decision_json(d)
    data = {k: body[k] for k in ("status", "setting", "encounter_id", "question", "priorities", "options",
                                 "decision_aids", "lead_clinician", "outcome", "deferral", "follow_up",
                                 "supersedes", "superseded_by", "supersede_reason")}
    return dict(data, decision_id=d.id, opened_at=body["created_at"], changed_by=_changed_by())


def _emit(session, d: Decision, type_: str) -> None:
    emit(session, outbox, service="decisions", type=type_, subject=d.nhs_number, aggregate_id=d.id,
         aggregate_version=d.version, data=_event_data(d), traceparent=traceparent())


def _options(options: list[dict]) -> list[dict]:
    out = []
    for o in options:
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


def _aids(aids: list[dict]) -> list[dict]:
    return [{k: _jsonable(a.get(k)) for k in ("title", "url", "format", "source")} for a in aids]


def _load(session, decision_id: str, for_update: bool = False) -> Decision:
    return load_or_404(session, Decision, decision_id, "decision", for_update)


def _transition(d: Decision, action: str) -> None:
    try:
        d.transition(action)
    except IllegalTransition as exc:
        raise Problem(409, "Conflict", str(exc))


def _new_decision(body: dict, nhs_number: str, at: datetime) -> Decision:
    return Decision(
        id=str(uuid.uuid4()), nhs_number=nhs_number, status="opened", version=1,
        setting=body["setting"], encounter_id=body.get("encounter_id"),
        content={
            "question": body["question"],
            "priorities": stamp_priorities(body.get("priorities", []), at),
            "options": _options(body["options"]),
            "decision_aids": _aids(body.get("decision_aids", [])),
            "lead_clinician": body.get("lead_clinician"),
            "outcome": None, "deferral": None, "deferrals": [], "follow_up": _follow_up(None),
        },
        created_by=service_caller().client_id, created_at=at, updated_at=at)


def _supersede(session, old: Decision, new: Decision, reason: str | None, at: datetime) -> None:
    """Mark ``old`` superseded by ``new`` (both in this session); emit both events."""
    _transition(old, "supersede")
    old.superseded_by = new.id
    old.content = dict(old.content, supersede_reason=reason)
    old.updated_at = at
    old.version += 1
    new.supersedes = old.id
    new.content = dict(new.content, supersede_reason=reason)
    session.add(new)
    session.flush()
    _emit(session, new, "decision.opened")
    _emit(session, old, "decision.superseded")


# -- routes -------------------------------------------------------------------------------------
@bp.route("", methods=["POST"])
@requires("decisions:write")
@bp.arguments(DecisionCreateSchema)
@bp.response(201, DecisionSchema)
def open_decision(body):
    """Open a shared decision (optionally superseding an earlier one of the same person)."""
    db = ctx().db
    try:
        with db.session() as session:
            stored = idempotency.replay(session, idempotency_keys)
            if stored is not None:
                return stored
            at = now()
            decision = _new_decision(body, body["nhs_number"], at)
            if body.get("supersedes"):
                old = session.execute(select(Decision).where(Decision.id == str(body["supersedes"]))
                                      .with_for_update()).scalar_one_or_none()
                if old is None or old.nhs_number != body["nhs_number"]:
                    raise Problem(422, "Unprocessable Content", "Some fields are not valid: supersedes",
                                  errors={"supersedes": ["No decision of this person has this id."]})
                check_if_match_optional(old.version)
                _supersede(session, old, decision, body.get("supersede_reason"), at)
            else:
                session.add(decision)
                session.flush()
                _emit(session, decision, "decision.opened")
            payload = decision_json(decision)
            idempotency.remember(session, idempotency_keys, payload, 201)
    except IntegrityError:
        with db.session() as session:  # lost a race on the same Idempotency-Key
            stored = idempotency.replay(session, idempotency_keys)
        if stored is None:
            raise
        return stored
    return with_etag(payload, 201, {"Location": f"/v1/decisions/{decision.id}"})


def check_if_match_optional(version: int) -> None:
    """On a create that supersedes, If-Match (the old decision's ETag) is checked when sent."""
    from flask import request
    if request.headers.get("If-Match"):
        check_if_match(version)


@bp.route("", methods=["GET"])
@requires("decisions:read")
@bp.arguments(DecisionListQuery, location="query")
@bp.response(200, DecisionListSchema)
def list_decisions(query):
    """A person's decisions, oldest first, a page at a time (``next_cursor`` until null)."""
    stmt = select(Decision).where(Decision.nhs_number == query["nhs_number"])
    for name in ("status", "setting", "encounter_id"):
        if query.get(name):
            stmt = stmt.where(getattr(Decision, name) == query[name])
    with ctx().db.session() as session:
        rows, next_cursor = keyset_page(session, stmt, Decision, query["limit"], query.get("cursor"))
        return {"items": [decision_json(d) for d in rows], "next_cursor": next_cursor}


@bp.route("/<decision_id>", methods=["GET"])
@requires("decisions:read")
@bp.response(200, DecisionSchema)
def get_decision(decision_id):
    with ctx().db.session() as session:
        return with_etag(decision_json(_load(session, decision_id)))


@bp.route("/<decision_id>", methods=["PATCH"])
@requires("decisions:write")
@bp.arguments(DecisionPatchSchema)
@bp.response(200, DecisionSchema)
def change_decision(body, decision_id):
    """Change an opened or deferred decision (a recorded one is kept as made: supersede it)."""
    with ctx().db.session() as session:
        d = _load(session, decision_id, for_update=True)
        check_if_match(d.version)
        _transition(d, "update")
        at = now()
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
            content["options"] = _options(body["options"])
        if "decision_aids" in body:
            content["decision_aids"] = _aids(body["decision_aids"])
        d.content = content
        d.updated_at = at
        d.version += 1
        session.flush()
        _emit(session, d, "decision.updated")
        return with_etag(decision_json(d))


@bp.route("/<decision_id>/record", methods=["POST"])
@requires("decisions:write")
@bp.arguments(RecordSchema)
@bp.response(200, DecisionSchema)
def record_decision(body, decision_id):
    """Record the option chosen together, the person's reason and the clinician."""
    with ctx().db.session() as session:
        d = _load(session, decision_id, for_update=True)
        check_if_match(d.version)
        _transition(d, "record")
        chosen = d.option(str(body["chosen_option_id"]))
        if chosen is None:
            labels = "; ".join(f"{o['id']} ({o['label']})" for o in d.content["options"])
            raise Problem(422, "Unprocessable Content", "Some fields are not valid: chosen_option_id",
                          errors={"chosen_option_id": [f"Not one of this decision's options: {labels}."]})
        at = now()
        content = dict(d.content)
        content["outcome"] = {
            "chosen_option_id": chosen["id"], "chosen_option_label": chosen["label"],
            "chosen_is_no_change": chosen["is_no_change"], "persons_reason": body["persons_reason"],
            "clinician": body["clinician"], "others_involved": body["others_involved"],
            "recorded_at": iso(at), "recorded_by": _changed_by(),
        }
        content["deferral"] = None
        if body.get("follow_up"):
            content["follow_up"] = _merge_follow_up(content.get("follow_up"), body["follow_up"])
        d.content = content
        d.updated_at = at
        d.version += 1
        session.flush()
        _emit(session, d, "decision.recorded")
        return with_etag(decision_json(d))


@bp.route("/<decision_id>/defer", methods=["POST"])
@requires("decisions:write")
@bp.arguments(DeferSchema)
@bp.response(200, DecisionSchema)
def defer_decision(body, decision_id):
    """Put the decision off (the person wants time, more information, or someone with them)."""
    with ctx().db.session() as session:
        d = _load(session, decision_id, for_update=True)
        check_if_match(d.version)
        _transition(d, "defer")
        at = now()
        deferral = {"reason": body["reason"], "revisit_by": body["revisit_by"].isoformat(),
                    "clinician": body.get("clinician"), "deferred_at": iso(at)}
        content = dict(d.content)
        content["deferral"] = deferral
        content["deferrals"] = [*content.get("deferrals", []), deferral]
        content["follow_up"] = dict(_follow_up(content.get("follow_up")), revisit_by=deferral["revisit_by"])
        d.content = content
        d.updated_at = at
        d.version += 1
        session.flush()
        _emit(session, d, "decision.deferred")
        return with_etag(decision_json(d))


def _merge_follow_up(stored: dict | None, given: dict) -> dict:
    merged = _follow_up(stored)
    for key, value in given.items():
        merged[key] = _jsonable(value)
    return merged


@bp.route("/<decision_id>/follow-up", methods=["POST"])
@requires("decisions:write")
@bp.arguments(FollowUpSchema)
@bp.response(200, DecisionSchema)
def follow_up(body, decision_id):
    """Record the follow-up: summary given, letter sent (to whom), when to revisit."""
    if not body:
        raise Problem(422, "Unprocessable Content", "Send at least one follow-up field.",
                      errors={"body": ["Send at least one of: " + ", ".join(FOLLOW_UP_FIELDS) + "."]})
    with ctx().db.session() as session:
        d = _load(session, decision_id, for_update=True)
        check_if_match(d.version)
        _transition(d, "follow_up")
        d.content = dict(d.content, follow_up=_merge_follow_up(d.content.get("follow_up"), body))
        d.updated_at = now()
        d.version += 1
        session.flush()
        _emit(session, d, "decision.followed-up")
        return with_etag(decision_json(d))


@bp.route("/<decision_id>/supersede", methods=["POST"])
@requires("decisions:write")
@bp.arguments(SupersedeSchema)
@bp.response(201, DecisionSchema)
def supersede_decision(body, decision_id):
    """Revisit a decision: a new decision (201) replaces this one, which becomes superseded.

    Fields not sent are carried over from the old decision (its options keep their ids).
    """
    with ctx().db.session() as session:
        old = _load(session, decision_id, for_update=True)
        check_if_match(old.version)
        if old.status == "superseded":
            _transition(old, "supersede")  # 409 with the reason
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
        _supersede(session, old, new, body["reason"], at)
        payload = decision_json(new)
    return with_etag(payload, 201, {"Location": f"/v1/decisions/{new.id}"})
