"""A care and support plan as FHIR R4: CarePlan, Goal, Observation (the results shared) and Patient.

Pure functions from a plan in the shape the API returns (``api.plan_json``) to FHIR R4 JSON
dicts; no FHIR library is needed at run time (the tests validate every document with
fhir.resources). The gateway's person Bundle (``gateway/fhir.py``) uses the same mapping, so a
plan reads the same from either door.

What FHIR R4 has no element for travels in extensions under :data:`EXT` (documented in
docs/http-api.md): what matters to the person (``what-matters``), the next review date, who agreed
the plan and whether the person did, when results were shared, and each action's owner.
"""
from __future__ import annotations

import re
import uuid

NHS_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
URI_SYSTEM = "urn:ietf:rfc:3986"
EXT = "https://coproduction.example.org/fhir/StructureDefinition/"
GOAL_ACHIEVEMENT_SYSTEM = "http://terminology.hl7.org/CodeSystem/goal-achievement"
CATEGORY_SYSTEM = "https://coproduction.example.org/fhir/CodeSystem/care-plan-category"
#: ids derived from our own ids are stable: the same plan always maps to the same FHIR ids
NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://coproduction.example.org/fhir")

PLAN_STATUS = {"draft": "draft", "active": "active", "on_hold": "on-hold", "completed": "completed",
               "revoked": "revoked"}
ACTION_STATUS = {"to_do": "not-started", "in_progress": "in-progress", "done": "completed",
                 "cancelled": "cancelled"}
ACHIEVEMENT_DISPLAY = {
    "in-progress": "In Progress", "improving": "Improving", "worsening": "Worsening",
    "no-change": "No Change", "achieved": "Achieved", "sustaining": "Sustaining",
    "not-achieved": "Not Achieved", "no-progress": "No Progress", "not-attainable": "Not Attainable",
}
OWNER_DISPLAY = {"person": "The person", "practice": "GP practice", "community": "Community services"}
_INT = re.compile(r"-?(0|[1-9][0-9]{0,14})")
_DEC = re.compile(r"-?(0|[1-9][0-9]{0,14})\.[0-9]{0,14}[1-9]")


def derived_id(*parts: str) -> str:
    return str(uuid.uuid5(NAMESPACE, ":".join(parts)))


def patient_id(nhs_number: str) -> str:
    return derived_id("patient", nhs_number)


def ref(resource_id: str, display: str | None = None) -> dict:
    out = {"reference": f"urn:uuid:{resource_id}"}
    if display:
        out["display"] = display
    return out


def patient(nhs_number: str) -> dict:
    return {"resourceType": "Patient", "id": patient_id(nhs_number),
            "identifier": [{"system": NHS_SYSTEM, "value": nhs_number}]}


def _ext(name: str, **value) -> dict:
    return {"url": EXT + name, **value}


def _priority_ext(p: dict) -> dict:
    parts = [{"url": "id", "valueString": p["id"]}, {"url": "text", "valueString": p["text"]},
             {"url": "category", "valueCode": p["category"]},
             {"url": "expressedBy", "valueCode": p.get("expressed_by") or "person"},
             {"url": "status", "valueCode": p.get("status") or "active"}]
    if p.get("rank") is not None:
        parts.append({"url": "rank", "valuePositiveInt": p["rank"]})
    if p.get("recorded_at"):
        parts.append({"url": "recordedAt", "valueDateTime": p["recorded_at"]})
    return _ext("what-matters", extension=parts)


def _number(value: str):
    if _INT.fullmatch(value):
        return int(value)
    if _DEC.fullmatch(value) and repr(float(value)) == value:
        return float(value)
    return None


def goal(plan: dict, g: dict) -> dict:
    subject = ref(patient_id(plan["nhs_number"]))
    out = {
        "resourceType": "Goal", "id": derived_id("goal", plan["id"], g["id"]),
        "identifier": [{"system": URI_SYSTEM, "value": f"urn:uuid:{g['id']}"}],
        "lifecycleStatus": g.get("lifecycle_status") or "active",
        "achievementStatus": {"coding": [{
            "system": GOAL_ACHIEVEMENT_SYSTEM, "code": g.get("achievement_status") or "in-progress",
            "display": ACHIEVEMENT_DISPLAY.get(g.get("achievement_status") or "in-progress")}]},
        "description": {"text": g["description"]},
        "subject": subject,
    }
    if plan.get("created_at"):
        out["startDate"] = plan["created_at"][:10]
    target = g.get("target")
    if target:
        t = {"measure": {"text": target["measure"]}}
        if target.get("value") is not None:
            t["detailQuantity"] = {"value": target["value"]}
            if target.get("unit"):
                t["detailQuantity"]["unit"] = target["unit"]
        elif target.get("unit"):
            t["detailString"] = target["unit"]
        if target.get("due"):
            t["dueDate"] = target["due"]
        out["target"] = [t]
    if g.get("status_date"):
        out["statusDate"] = g["status_date"]
    if g.get("priority_ids"):
        out["extension"] = [_ext("serves-priority", valueString=p) for p in g["priority_ids"]]
    return out


def result(plan: dict, r: dict) -> dict:
    out = {
        "resourceType": "Observation", "id": derived_id("result", plan["id"], r["id"]),
        "identifier": [{"system": URI_SYSTEM, "value": f"urn:uuid:{r['id']}"}],
        "status": "final", "code": {"text": r["name"]},
        "subject": ref(patient_id(plan["nhs_number"])),
    }
    if r.get("taken_on"):
        out["effectiveDateTime"] = r["taken_on"]
    number = _number(r["value"])
    if number is not None:
        out["valueQuantity"] = {"value": number, **({"unit": r["unit"]} if r.get("unit") else {})}
    else:
        out["valueString"] = r["value"] + (f" {r['unit']}" if r.get("unit") else "")
    return out


def _activity(plan: dict, a: dict) -> dict:
    owner = a["owner"]
    performer = (ref(patient_id(plan["nhs_number"]), OWNER_DISPLAY[owner]) if owner == "person"
                 else {"display": OWNER_DISPLAY.get(owner, owner)})
    detail = {
        "extension": [_ext("action-owner", valueCode=owner)],
        "status": ACTION_STATUS.get(a.get("status") or "to_do", "unknown"),
        "description": a["text"],
        "performer": [performer],
    }
    if a.get("due"):
        detail["scheduledPeriod"] = {"end": a["due"]}
    return {"id": a["id"], "detail": detail}


def care_plan(plan: dict) -> dict:
    subject = ref(patient_id(plan["nhs_number"]))
    extensions = [_priority_ext(p) for p in plan.get("priorities") or []]
    if plan.get("next_review_date"):
        extensions.append(_ext("next-review-date", valueDate=plan["next_review_date"]))
    if plan.get("agreed_by") or plan.get("person_agreed") is not None:
        parts = []
        if plan.get("agreed_by"):
            parts.append({"url": "agreedBy", "valueString": plan["agreed_by"]})
        if plan.get("person_agreed") is not None:
            parts.append({"url": "personAgreed", "valueBoolean": bool(plan["person_agreed"])})
        if plan.get("agreed_at"):
            parts.append({"url": "agreedAt", "valueDateTime": plan["agreed_at"]})
        extensions.append(_ext("agreement", extension=parts))
    if plan.get("results_shared_at"):
        extensions.append(_ext("results-shared-at", valueDateTime=plan["results_shared_at"]))
    if plan.get("care_coordinator"):
        extensions.append(_ext("care-coordinator", valueString=plan["care_coordinator"]))

    out = {
        "resourceType": "CarePlan", "id": plan["id"],
        "meta": {"versionId": str(plan["version"])},
        "identifier": [{"system": URI_SYSTEM, "value": f"urn:uuid:{plan['id']}"}],
        "status": PLAN_STATUS.get(plan["status"], "unknown"),
        "intent": "plan",
        "category": [{"coding": [{"system": CATEGORY_SYSTEM, "code": "year-of-care",
                                  "display": "Year of Care care and support plan"}],
                      "text": "Care and support plan"}],
        "title": "Care and support plan",
        "subject": subject,
    }
    if extensions:
        out["extension"] = extensions
    if plan.get("updated_at"):
        out["meta"]["lastUpdated"] = plan["updated_at"]
    if plan.get("conditions"):
        out["description"] = "Care and support plan for " + ", ".join(plan["conditions"])
        out["addresses"] = [{"display": c} for c in plan["conditions"]]
    if plan.get("agreed_at"):
        out["period"] = {"start": plan["agreed_at"]}
        if plan.get("closed_at"):
            out["period"]["end"] = plan["closed_at"]
    if plan.get("created_at"):
        out["created"] = plan["created_at"]
    if plan.get("agreed_by"):
        out["author"] = {"display": plan["agreed_by"]}
    if plan.get("person_agreed"):
        out["contributor"] = [subject]
    if plan.get("results"):
        out["supportingInfo"] = [ref(derived_id("result", plan["id"], r["id"]), r["name"])
                                 for r in plan["results"]]
    if plan.get("goals"):
        out["goal"] = [ref(derived_id("goal", plan["id"], g["id"]), g["description"]) for g in plan["goals"]]
    if plan.get("actions"):
        out["activity"] = [_activity(plan, a) for a in plan["actions"]]
    if plan.get("status_reason"):
        out["note"] = [{"text": f"{plan['status'].replace('_', ' ')}: {plan['status_reason']}"}]
    return out


def plan_resources(plan: dict) -> list[dict]:
    """CarePlan, then its Goals, then the Observations it rests on (no Patient)."""
    return ([care_plan(plan)] + [goal(plan, g) for g in plan.get("goals") or []]
            + [result(plan, r) for r in plan.get("results") or []])


def entry(resource: dict) -> dict:
    return {"fullUrl": f"urn:uuid:{resource['id']}", "resource": resource}


def bundle(nhs_number: str, resources: list[dict], *, timestamp: str, bundle_id: str | None = None) -> dict:
    """A collection Bundle: the Patient first, then the resources given."""
    return {"resourceType": "Bundle", "id": bundle_id or str(uuid.uuid4()),
            "meta": {"lastUpdated": timestamp}, "type": "collection", "timestamp": timestamp,
            "entry": [entry(patient(nhs_number))] + [entry(r) for r in resources]}


def plan_bundle(plan: dict, timestamp: str) -> dict:
    """One plan, as the plans service serves it at ``GET /v1/plans/{id}/fhir``."""
    return bundle(plan["nhs_number"], plan_resources(plan), timestamp=timestamp,
                  bundle_id=derived_id("plan-bundle", plan["id"], str(plan["version"])))
