"""Writes from GP systems: ``POST /CarePlan`` (with ``If-None-Exist``) and ``PUT /CarePlan/{id}``.

A CarePlan is mapped (interop/fhir_plans_in.py) and sent to the plans service's own JSON API, so it
is stored, versioned and published as the service's events, and the portfolio shows it. Every
element is checked before anything is sent: a CarePlan that cannot be mapped is a 422 naming each
element, and nothing is stored. A change of content and of status is two versions (the revision,
then the transition), each ``If-Match``ed on the one before.
"""
from __future__ import annotations

import hashlib
import json
from urllib.parse import parse_qsl

from flask import request

from coproduction.events import now
from coproduction.http import Problem, ctx
from interop import fhir_plans
from interop.fhir_plans_in import Mapped, map_care_plan

from .. import policy, subjects
from ..routing import call_service
from . import bp
from .responses import etag, for_service, resource_response, versions_named

CONTENT = ("conditions", "priorities", "goals", "actions", "next_review_date", "results", "results_shared_at",
           "care_coordinator")
#: (our status now, our status wanted) -> the plans service's transition
MOVES = {("draft", "active"): "agree", ("active", "on_hold"): "hold", ("on_hold", "active"): "resume",
         ("active", "completed"): "close", ("on_hold", "completed"): "close", ("draft", "revoked"): "revoke",
         ("active", "revoked"): "revoke", ("on_hold", "revoked"): "revoke"}
NEEDS_REASON = ("hold", "revoke")
FINAL = ("completed", "revoked")


def _unmappable(mapped: Mapped) -> Problem:
    return Problem(422, "Unprocessable Content", "This CarePlan cannot be stored as it is: "
                   + ", ".join(sorted(mapped.errors)), errors=mapped.errors)


def _send(method: str, path: str, body: dict | None, mapped: Mapped, version: int | None = None,
          key: str | None = None) -> dict:
    headers = {"Content-Type": "application/json"}
    if version is not None:
        headers["If-Match"] = f'"{version}"'
    if key:
        headers["Idempotency-Key"] = key
    upstream = call_service("plans", method, path, for_service("plans:write", "plans:read"),
                            json.dumps(body or {}).encode(), headers=headers)
    if upstream.status_code in (200, 201):
        return upstream.json()
    try:
        problem = upstream.json()
    except ValueError:
        problem = {}
    if upstream.status_code == 422 and isinstance(problem.get("errors"), dict):
        errors = {}
        for path_, messages in problem["errors"].items():
            errors.setdefault(mapped.element_of(path_), []).extend(messages)
        raise Problem(422, "Unprocessable Content", "Some elements are not valid: " + ", ".join(sorted(errors)),
                      errors=errors)
    if upstream.status_code == 412:
        raise Problem(412, "Precondition Failed", "The CarePlan has changed since: read it again and retry.",
                      headers={"ETag": etag(upstream.headers.get("ETag", "").strip('"'))})
    if upstream.status_code in (403, 404, 409, 428):
        raise Problem(upstream.status_code, problem.get("title") or "Refused", problem.get("detail"))
    raise Problem(502, "Bad Gateway", f"The plans service answered {upstream.status_code}.")


def _move(plan: dict, mapped: Mapped) -> str | None:
    """The transition the wanted status needs (None: none), refusing what cannot be done."""
    if mapped.status == plan["status"]:
        return None
    action = MOVES.get((plan["status"], mapped.status))
    if action is None:
        raise Problem(422, "Unprocessable Content", "CarePlan.status", errors={"CarePlan.status": [
            f"A {fhir_plans.PLAN_STATUS[plan['status']]} care plan cannot become "
            f"{fhir_plans.PLAN_STATUS[mapped.status]}."]})
    if action in NEEDS_REASON and not mapped.reason:
        raise Problem(422, "Unprocessable Content", "CarePlan.extension", errors={"CarePlan.extension": [
            f"Say why, in the extension {fhir_plans.EXT}status-reason."]})
    if action == "agree" and not (mapped.agreement and mapped.agreement.get("agreed_by")
                                  and isinstance(mapped.agreement.get("person_agreed"), bool)):
        raise Problem(422, "Unprocessable Content", "CarePlan.extension", errors={"CarePlan.extension": [
            f"An active plan was agreed: say by whom and whether the person agreed (extension "
            f"{fhir_plans.EXT}agreement with agreedBy and personAgreed)."]})
    if action == "agree" and not mapped.content["priorities"]:
        raise Problem(422, "Unprocessable Content", "CarePlan.extension", errors={"CarePlan.extension": [
            "A plan is agreed once it records what matters to the person (a what-matters extension)."]})
    return action


def _transition(plan: dict, action: str, mapped: Mapped) -> dict:
    body = dict(mapped.agreement) if action == "agree" else ({"reason": mapped.reason} if mapped.reason else {})
    return _send("POST", f"/v1/plans/{plan['id']}/{action}", body, mapped, version=plan["version"])


def _existing(criteria: str, nhs: str) -> list[dict]:
    """The person's plans matching a conditional create's ``If-None-Exist`` (status, and the patient)."""
    statuses = None
    for name, value in parse_qsl(criteria, keep_blank_values=True):
        if name in policy.PATIENT_SEARCH:
            if value.removeprefix("Patient/").split("|")[-1] != nhs:
                raise Problem(400, "Bad Request", "If-None-Exist names another person than CarePlan.subject.")
        elif name == "status":
            statuses = {k for k, v in fhir_plans.PLAN_STATUS.items() if v in value.split(",")}
        else:
            raise Problem(400, "Bad Request", f"If-None-Exist: {name} is not offered (patient and status are).")
    upstream = call_service("plans", "GET", "/v1/plans", for_service("plans:read"),
                            query=f"nhs_number={nhs}&limit=500")
    if upstream.status_code != 200:
        raise Problem(502, "Bad Gateway", f"The plans service answered {upstream.status_code}.")
    return [p for p in upstream.json()["items"] if statuses is None or p["status"] in statuses]


@bp.post("/CarePlan")
def create_care_plan():
    decision = policy.current()
    nhs = decision.subject
    resource = policy.body_json()
    mapped = map_care_plan(resource, nhs)
    criteria = request.headers.get("If-None-Exist")
    if mapped.errors:
        raise _unmappable(mapped)
    if mapped.status not in ("draft", "active"):
        raise Problem(422, "Unprocessable Content", "CarePlan.status",
                      errors={"CarePlan.status": ["A new care plan is draft or active."]})
    if mapped.status == "active":
        _move({"status": "draft", "version": 1}, mapped)  # refuse an agreement that cannot be made, first
    key = None
    if criteria is not None:
        found = _existing(criteria, nhs)
        if len(found) > 1:
            raise Problem(412, "Precondition Failed", f"If-None-Exist matches {len(found)} care plans.")
        if found:
            return resource_response(fhir_plans.care_plan(found[0], fhir_plans.SERVER))
        # the same conditional create sent twice at once makes one plan
        key = hashlib.sha256(f"{nhs}|{criteria}|".encode() + request.get_data()).hexdigest()
    plan = _send("POST", "/v1/plans", dict(mapped.content, nhs_number=nhs), mapped, key=key)
    with ctx().db.session() as session:  # known, and held, from this moment
        subjects.record_created(session, "plans", plan["id"], nhs, decision.caller, now())
    if mapped.status == "active":
        plan = _transition(plan, "agree", mapped)
    return resource_response(fhir_plans.care_plan(plan, fhir_plans.SERVER), status=201, location=True)


def _differs(key: str, wanted, held) -> bool:
    """Whether a content field changes; items are compared on the fields the CarePlan carries."""
    if isinstance(wanted, list) and isinstance(held, list) and len(wanted) == len(held):
        return any(isinstance(w, dict) and isinstance(h, dict) and {k: h.get(k) for k in w} != w
                   or not isinstance(w, dict) and w != h for w, h in zip(wanted, held))
    return wanted != held


@bp.put("/CarePlan/<resource_id>")
def update_care_plan(resource_id):
    decision = policy.current()
    wanted = versions_named(request.headers.get("If-Match"))
    if not wanted:
        raise Problem(428, "Precondition Required", 'Send If-Match: W/"<versionId>" with the version you last read.')
    resource = policy.body_json()
    if not isinstance(resource, dict) or resource.get("id") != resource_id:
        raise Problem(400, "Bad Request", "The CarePlan's id must be the id in the URL.",
                      errors={"CarePlan.id": ["Must be the id in the URL."]})
    upstream = call_service("plans", "GET", f"/v1/plans/{resource_id}", for_service("plans:read"))
    if upstream.status_code != 200:
        raise Problem(404 if upstream.status_code == 404 else 502, "Not Found", "No such CarePlan.")
    plan = upstream.json()
    if str(plan["version"]) not in wanted:
        raise Problem(412, "Precondition Failed", f"The CarePlan is at version {plan['version']}; read it again "
                      "and retry.", headers={"ETag": etag(plan["version"])})
    mapped = map_care_plan(resource, decision.subject, plan)
    if mapped.errors:
        raise _unmappable(mapped)
    action = _move(plan, mapped)
    changed = {k: v for k, v in mapped.content.items() if k in CONTENT and _differs(k, v, plan.get(k))}
    if changed and plan["status"] in FINAL:
        raise Problem(409, "Conflict", f"A {fhir_plans.PLAN_STATUS[plan['status']]} care plan is final: its "
                      "content cannot change.")
    if changed:
        plan = _send("PATCH", f"/v1/plans/{resource_id}", changed, mapped, version=plan["version"])
    if action:
        plan = _transition(plan, action, mapped)
    return resource_response(fhir_plans.care_plan(plan, fhir_plans.SERVER))
