"""Budgets, shared decisions and course places as FHIR R4, for the person's Bundles and the server.

FHIR R4 has no resource for any of the three, so each goes into the one whose definition fits it:

- a **personal health budget** is an ``Account``, "a financial tool for tracking value accrued for a
  particular purpose": the money (annual and allocated, ``Money`` in pounds) and what it pays for
  travel in extensions, its own status beside the Account's coarser one;
- a **shared decision** is a ``Task`` (intent ``plan``): the decision to be made with the person,
  its options as ``input``, what was chosen and the person's reason as ``output``;
- a **place on a self-management course** is an ``EpisodeOfCare``: the person's association with the
  course provider, during which the sessions happen.

The input is a projection section (the aggregate's newest state with ``id``, ``version`` and
``updated_at``), the shape the portfolio holds. docs/fhir.md documents every element.
"""
from __future__ import annotations

from .fhir_plans import EXT, URI_SYSTEM, Refs, SERVER

CODES = "https://coproduction.example.org/fhir/CodeSystem/"

ACCOUNT_STATUS = {"requested": "inactive", "planning": "inactive", "agreed": "active", "active": "active",
                  "under_review": "active", "suspended": "on-hold", "ended": "inactive"}
TASK_STATUS = {"opened": "in-progress", "deferred": "on-hold", "recorded": "completed", "superseded": "cancelled"}
EPISODE_STATUS = {"referred": "planned", "enrolled": "planned", "active": "active", "completed": "finished",
                  "not_completed": "finished", "withdrawn": "cancelled"}
BUDGET_KIND_DISPLAY = {"personal_health_budget": "Personal health budget", "personal_budget": "Personal budget",
                       "integrated_personal_budget": "Integrated personal budget"}


def _meta(section: dict) -> dict:
    meta = {"versionId": str(section["version"])}
    if section.get("updated_at"):
        meta["lastUpdated"] = section["updated_at"]
    return meta


def _money(pence: int | None, currency: str | None) -> dict | None:
    if pence is None:
        return None
    return {"value": pence / 100, "currency": currency or "GBP"}


def _code(system: str, code: str, display: str | None = None) -> dict:
    coding = {"system": CODES + system, "code": code}
    if display:
        coding["display"] = display
    return {"coding": [coding]}


def _part(url: str, **value) -> dict:
    return {"url": url, **value}


def account(nhs_number: str, budget: dict, refs: Refs = SERVER, plan_visible: bool = True) -> dict:
    currency = budget.get("currency") or "GBP"
    kind = budget.get("kind") or "personal_health_budget"
    extensions = [{"url": EXT + "budget-status", "valueCode": budget["status"]}]
    for name, pence in (("annual-amount", budget.get("annual_pence")), ("allocated-amount", budget.get("allocated_pence"))):
        money = _money(pence, currency)
        if money:
            extensions.append({"url": EXT + name, "valueMoney": money})
    for item in budget.get("line_items") or []:
        parts = [_part("description", valueString=item.get("description") or "")]
        for key, url in (("category", "category"), ("frequency", "frequency"), ("sector", "sector")):
            if item.get(key):
                parts.append(_part(url, valueCode=item[key]))
        if item.get("pence") is not None:
            parts.append(_part("amount", valueMoney=_money(item["pence"], currency)))
        if item.get("provider"):
            parts.append(_part("provider", valueString=item["provider"]))
        extensions.append({"url": EXT + "budget-supports", "extension": parts})
    if budget.get("next_review_date"):
        extensions.append({"url": EXT + "next-review-date", "valueDate": budget["next_review_date"]})
    if plan_visible and budget.get("plan_id"):
        extensions.append({"url": EXT + "agreed-against-plan",
                           "valueReference": refs.ref("CarePlan", budget["plan_id"])})
    out = {
        "resourceType": "Account", "id": budget["id"], "meta": _meta(budget), "extension": extensions,
        "identifier": [{"system": URI_SYSTEM, "value": f"urn:uuid:{budget['id']}"}],
        "status": ACCOUNT_STATUS.get(budget["status"], "unknown"),
        "type": {**_code("budget-kind", kind, BUDGET_KIND_DISPLAY.get(kind)), "text": BUDGET_KIND_DISPLAY.get(kind, kind)},
        "name": BUDGET_KIND_DISPLAY.get(kind, "Budget"),
        "subject": [refs.patient_ref(nhs_number)],
    }
    period = {}
    if budget.get("started_on"):
        period["start"] = budget["started_on"]
    ended = budget.get("ended") or {}
    if ended.get("effective_from"):
        period["end"] = ended["effective_from"]
    if period:
        out["servicePeriod"] = period
    holder = budget.get("holder") or {}
    if holder.get("organisation"):
        out["owner"] = {"display": holder["organisation"]}
    if budget.get("care_coordinator"):
        out["description"] = f"Care coordinator: {budget['care_coordinator']}"
    return out


def task(nhs_number: str, decision: dict, refs: Refs = SERVER) -> dict:
    out = {
        "resourceType": "Task", "id": decision["id"], "meta": _meta(decision),
        "identifier": [{"system": URI_SYSTEM, "value": f"urn:uuid:{decision['id']}"}],
        "status": TASK_STATUS.get(decision["status"], "in-progress"),
        "intent": "plan",
        "code": {**_code("care-activity", "shared-decision", "Shared decision"), "text": "Shared decision"},
        "for": refs.patient_ref(nhs_number),
        "extension": [{"url": EXT + "decision-status", "valueCode": decision["status"]}],
    }
    if decision.get("question"):
        out["description"] = decision["question"]
    if decision.get("setting"):
        out["extension"].append({"url": EXT + "decision-setting", "valueCode": decision["setting"]})
    if decision.get("opened_at"):
        out["authoredOn"] = decision["opened_at"]
    if decision.get("updated_at"):
        out["lastModified"] = decision["updated_at"]
    if decision.get("lead_clinician"):
        out["owner"] = {"display": decision["lead_clinician"]}
    if decision.get("encounter_id"):
        out["encounter"] = {"identifier": {"value": decision["encounter_id"]}}
    options = [{"type": _code("decision-input", "no-change-option" if o.get("is_no_change") else "option",
                              "The no-change option" if o.get("is_no_change") else "An option"),
                "valueString": o.get("label") or ""} for o in decision.get("options") or []]
    if options:
        out["input"] = options
    outcome = decision.get("outcome") or {}
    outputs = []
    if outcome.get("chosen_option_label"):
        outputs.append({"type": _code("decision-output", "chosen-option", "The option chosen"),
                        "valueString": outcome["chosen_option_label"]})
    if outcome.get("persons_reason"):
        outputs.append({"type": _code("decision-output", "persons-reason", "The person's reason"),
                        "valueString": outcome["persons_reason"]})
    if outputs:
        out["output"] = outputs
    notes = []
    deferral = decision.get("deferral") or {}
    if decision["status"] == "deferred" and deferral:
        text = "Deferred" + (f": {deferral['reason']}" if deferral.get("reason") else "")
        if deferral.get("revisit_by"):
            text += f" (revisit by {deferral['revisit_by']})"
        notes.append({"text": text})
    if decision.get("superseded_by"):
        notes.append({"text": f"Superseded by a later decision ({decision['superseded_by']})"})
    if notes:
        out["note"] = notes
    return out


def episode_of_care(nhs_number: str, place: dict, refs: Refs = SERVER) -> dict:
    title = place.get("title") or place.get("programme") or "Self-management course"
    out = {
        "resourceType": "EpisodeOfCare", "id": place["id"], "meta": _meta(place),
        "identifier": [{"system": URI_SYSTEM, "value": f"urn:uuid:{place['id']}"}],
        "status": EPISODE_STATUS.get(place["status"], "planned"),
        "type": [{**_code("care-activity", "self-management-course", "Self-management course"), "text": title}],
        "patient": refs.patient_ref(nhs_number),
        "extension": [{"url": EXT + "course-place-status", "valueCode": place["status"]}],
    }
    if place.get("sessions") is not None:
        out["extension"].append({"url": EXT + "course-attendance", "extension": [
            _part("sessionsAttended", valueInteger=place.get("sessions_attended") or 0),
            _part("sessions", valueInteger=place["sessions"])]})
    period = {}
    if place.get("starts_on"):
        period["start"] = place["starts_on"]
    end = place.get("completed_at") or place.get("withdrawn_at")
    if end:
        period["end"] = end
    if period:
        out["period"] = period
    return out


#: FHIR resource -> the mapping of one section of the portfolio into it
MAPPINGS = {"Account": account, "Task": task, "EpisodeOfCare": episode_of_care}
