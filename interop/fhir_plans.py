"""A care and support plan as FHIR R4: CarePlan, Goal, Observation (the results shared) and Patient.

Pure functions from a plan in the shape the plans API returns (``services/plans/api.plan_json``)
to FHIR R4 JSON dicts; no FHIR library is needed at run time (the tests validate every document
with fhir.resources). The plans service's export, the gateway's person Bundle and the gateway's
FHIR server (gateway/fhir/) all use this one mapping, so a plan reads the same from every door.

How resources name each other is a :class:`Refs`: inside an export Bundle every id is a derived
UUID and references are ``urn:uuid:``s (:data:`EXPORT`); on the FHIR server the Patient's id is the
NHS number, a CarePlan's id is the plan's, and a Goal's or an Observation's id is its plan's id and
its own, so any of them can be read back (:data:`SERVER`).

What FHIR R4 has no element for travels in extensions under :data:`EXT` (documented in
docs/http-api.md): what matters to the person (``what-matters``), the next review date, who agreed
the plan and whether the person did, when results were shared, and each action's owner.
"""
from __future__ import annotations

import base64
import re
import uuid
from dataclasses import dataclass

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


def part_id(plan_id: str, item_id: str) -> str:
    """The server id of a plan's Goal or Observation: ``<plan id>.<item id in base32>`` (63 characters,
    inside FHIR's 64), so the plan, and with it the person, is known from the id alone."""
    raw = uuid.UUID(item_id).bytes
    return f"{plan_id}.{base64.b32encode(raw).decode().rstrip('=').lower()}"


def split_part_id(resource_id: str) -> tuple[str, str] | None:
    """(plan id, item id) of a :func:`part_id`, or None for anything else."""
    plan_id, dot, encoded = resource_id.partition(".")
    if not dot or len(encoded) != 26:
        return None
    try:
        uuid.UUID(plan_id)
        item = uuid.UUID(bytes=base64.b32decode(encoded.upper() + "======"))
    except (ValueError, TypeError):
        return None
    return (plan_id, str(item)) if part_id(plan_id, str(item)) == resource_id else None


@dataclass(frozen=True)
class Refs:
    """How the resources of a plan are identified and refer to each other."""

    server: bool

    def patient_id(self, nhs_number: str) -> str:
        return nhs_number if self.server else patient_id(nhs_number)

    def goal_id(self, plan_id: str, goal_id: str) -> str:
        return part_id(plan_id, goal_id) if self.server else derived_id("goal", plan_id, goal_id)

    def result_id(self, plan_id: str, result_id: str) -> str:
        return part_id(plan_id, result_id) if self.server else derived_id("result", plan_id, result_id)

    def ref(self, resource_type: str, resource_id: str, display: str | None = None) -> dict:
        out = {"reference": f"{resource_type}/{resource_id}" if self.server else f"urn:uuid:{resource_id}"}
        if display:
            out["display"] = display
        return out

    def patient_ref(self, nhs_number: str, display: str | None = None) -> dict:
        out = self.ref("Patient", self.patient_id(nhs_number), display)
        if self.server:
            out["identifier"] = {"system": NHS_SYSTEM, "value": nhs_number}
        return out


EXPORT, SERVER = Refs(server=False), Refs(server=True)


def ref(resource_id: str, display: str | None = None) -> dict:
    return EXPORT.ref("", resource_id, display)


def patient(nhs_number: str, refs: Refs = EXPORT) -> dict:
    return {"resourceType": "Patient", "id": refs.patient_id(nhs_number),
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


def _part_meta(plan: dict, refs: Refs) -> dict:
    """On the server a Goal's or an Observation's versions are its plan's (docs/fhir.md)."""
    if not refs.server:
        return {}
    meta = {"versionId": str(plan["version"])}
    if plan.get("updated_at"):
        meta["lastUpdated"] = plan["updated_at"]
    return {"meta": meta}


def goal(plan: dict, g: dict, refs: Refs = EXPORT) -> dict:
    subject = refs.patient_ref(plan["nhs_number"])
    out = {
        "resourceType": "Goal", "id": refs.goal_id(plan["id"], g["id"]), **_part_meta(plan, refs),
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


def result(plan: dict, r: dict, refs: Refs = EXPORT) -> dict:
    out = {
        "resourceType": "Observation", "id": refs.result_id(plan["id"], r["id"]), **_part_meta(plan, refs),
        "identifier": [{"system": URI_SYSTEM, "value": f"urn:uuid:{r['id']}"}],
        "status": "final", "code": {"text": r["name"]},
        "subject": refs.patient_ref(plan["nhs_number"]),
    }
    if r.get("taken_on"):
        out["effectiveDateTime"] = r["taken_on"]
    number = _number(r["value"])
    if number is not None:
        out["valueQuantity"] = {"value": number, **({"unit": r["unit"]} if r.get("unit") else {})}
    else:
        out["valueString"] = r["value"] + (f" {r['unit']}" if r.get("unit") else "")
    return out


def _activity(plan: dict, a: dict, refs: Refs) -> dict:
    owner = a["owner"]
    performer = (refs.patient_ref(plan["nhs_number"], OWNER_DISPLAY[owner]) if owner == "person"
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


def care_plan(plan: dict, refs: Refs = EXPORT) -> dict:
    subject = refs.patient_ref(plan["nhs_number"])
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
        out["supportingInfo"] = [refs.ref("Observation", refs.result_id(plan["id"], r["id"]), r["name"])
                                 for r in plan["results"]]
    if plan.get("goals"):
        out["goal"] = [refs.ref("Goal", refs.goal_id(plan["id"], g["id"]), g["description"])
                       for g in plan["goals"]]
    if plan.get("actions"):
        out["activity"] = [_activity(plan, a, refs) for a in plan["actions"]]
    if plan.get("status_reason"):
        out["note"] = [{"text": f"{plan['status'].replace('_', ' ')}: {plan['status_reason']}"}]
        out.setdefault("extension", []).append(_ext("status-reason", valueString=plan["status_reason"]))
    return out


def plan_resources(plan: dict, refs: Refs = EXPORT) -> list[dict]:
    """CarePlan, then its Goals, then the Observations it rests on (no Patient)."""
    return ([care_plan(plan, refs)] + [goal(plan, g, refs) for g in plan.get("goals") or []]
            + [result(plan, r, refs) for r in plan.get("results") or []])


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
