"""A FHIR R4 CarePlan coming in (a GP system's create or update), as the plans API's fields.

The reverse of :mod:`interop.fhir_plans`. What the plans service stores is taken from the elements
and extensions that mapping writes; Goals and Observations come as ``contained`` resources (new or
changed ones) or as references to the plan's own (kept as they are). Elements the mapping derives
(title, description, category, created, period, author, contributor, note, meta, text) are read-only
and ignored. Anything else cannot be stored, so it is refused, each element named in FHIRPath: a
GP's data is never silently dropped.

:class:`Mapped` also keeps where each field came from, so the service's own field errors
(``goals.0.target.due``) are answered as the element that was sent (``CarePlan.contained[0].target[0].dueDate``).
"""
from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field

from .fhir_plans import ACTION_STATUS, EXT, PLAN_STATUS, URI_SYSTEM, split_part_id

STATUS_IN = {v: k for k, v in PLAN_STATUS.items()}
ACTION_IN = {v: k for k, v in ACTION_STATUS.items()}
READ_ONLY = {"id", "meta", "text", "identifier", "category", "title", "description", "created", "period", "author",
             "contributor", "note", "implicitRules", "language"}
MAPPED = {"resourceType", "status", "intent", "subject", "extension", "addresses", "goal", "activity",
          "supportingInfo", "contained"}
PLAN_EXTENSIONS = {"what-matters", "next-review-date", "agreement", "results-shared-at", "care-coordinator",
                   "status-reason"}
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
GOAL_FIELDS = {"description": "description.text", "lifecycle_status": "lifecycleStatus",
               "achievement_status": "achievementStatus", "target": "target[0]", "target.measure": "target[0].measure.text",
               "target.value": "target[0].detailQuantity.value", "target.unit": "target[0].detailQuantity.unit",
               "target.due": "target[0].dueDate", "priority_ids": "extension(serves-priority)", "id": "identifier"}
ACTION_FIELDS = {"text": "description", "owner": "extension(action-owner)", "due": "scheduledPeriod.end",
                 "status": "status", "id": "id"}
RESULT_FIELDS = {"name": "code.text", "value": "value", "unit": "valueQuantity.unit", "taken_on": "effectiveDateTime",
                 "id": "identifier"}
PRIORITY_FIELDS = {"text": "extension(text)", "category": "extension(category)", "rank": "extension(rank)",
                   "expressed_by": "extension(expressedBy)", "status": "extension(status)",
                   "recorded_at": "extension(recordedAt)", "id": "extension(id)"}


@dataclass
class Mapped:
    content: dict = field(default_factory=dict)       # the plans API's content fields
    status: str | None = None                         # our status wanted
    agreement: dict | None = None                     # {agreed_by, person_agreed}
    reason: str | None = None                         # the status reason (hold, revoke, close)
    errors: dict[str, list[str]] = field(default_factory=dict)
    origin: dict[str, tuple[str, dict]] = field(default_factory=dict)

    def bad(self, element: str, message: str) -> None:
        self.errors.setdefault(element, []).append(message)

    def element_of(self, path: str) -> str:
        """The FHIR element a plans API field path (``goals.0.target.due``) came from."""
        for prefix in sorted(self.origin, key=len, reverse=True):
            if path == prefix or path.startswith(prefix + "."):
                base, fields = self.origin[prefix]
                rest = path[len(prefix) + 1:]
                return base + ("." + fields.get(rest, rest) if rest else "")
        return f"CarePlan ({path})"


def _ext_name(ext: dict) -> str | None:
    url = ext.get("url") if isinstance(ext, dict) else None
    return url[len(EXT):] if isinstance(url, str) and url.startswith(EXT) else None


def _value(ext: dict):
    return next((v for k, v in ext.items() if k.startswith("value")), None)


def _uuid_identifier(resource: dict, where: str, out: Mapped) -> str | None:
    ids = resource.get("identifier") or []
    for ident in ids if isinstance(ids, list) else []:
        value = ident.get("value", "") if isinstance(ident, dict) else ""
        if isinstance(ident, dict) and ident.get("system") == URI_SYSTEM and value.startswith("urn:uuid:"):
            try:
                return str(uuid.UUID(value.removeprefix("urn:uuid:")))
            except ValueError:
                break
    if ids:
        out.bad(f"{where}.identifier", f"Only this server's own identifier (system {URI_SYSTEM}, urn:uuid:…) is kept.")
    return None


def _priority(ext: dict, where: str, out: Mapped) -> dict:
    parts = {p.get("url"): _value(p) for p in ext.get("extension") or [] if isinstance(p, dict)}
    known = {"id", "text", "category", "expressedBy", "status", "rank", "recordedAt"}
    for name in sorted(set(parts) - known, key=str):
        out.bad(f"{where}.extension({name})", "Not a part of what-matters.")
    p = {"text": parts.get("text"), "category": parts.get("category"),
         "expressed_by": parts.get("expressedBy", "person"), "status": parts.get("status", "active"),
         "rank": parts.get("rank")}
    if parts.get("id"):
        p["id"] = parts["id"]
    if parts.get("recordedAt"):
        p["recorded_at"] = parts["recordedAt"]
    return p


def _target(goal: dict, where: str, out: Mapped) -> dict | None:
    targets = goal.get("target") or []
    if not isinstance(targets, list) or len(targets) > 1:
        out.bad(f"{where}.target", "At most one target.")
        return None
    if not targets:
        return None
    t = targets[0] if isinstance(targets[0], dict) else {}
    quantity = t.get("detailQuantity") or {}
    return {"measure": (t.get("measure") or {}).get("text"), "value": quantity.get("value"),
            "unit": quantity.get("unit") or t.get("detailString"), "due": t.get("dueDate")}


def _contained_goal(goal: dict, where: str, out: Mapped) -> dict:
    allowed = {"resourceType", "id", "identifier", "lifecycleStatus", "achievementStatus", "description", "target",
               "extension", "subject", "startDate", "statusDate", "meta"}
    for name in sorted(set(goal) - allowed):
        out.bad(f"{where}.{name}", "Not stored by this server.")
    g = {"description": (goal.get("description") or {}).get("text"),
         "lifecycle_status": goal.get("lifecycleStatus"),
         "achievement_status": ((goal.get("achievementStatus") or {}).get("coding") or [{}])[0].get("code", "in-progress"),
         "target": _target(goal, where, out), "priority_ids": []}
    for n, ext in enumerate(goal.get("extension") or []):
        if _ext_name(ext) == "serves-priority":
            g["priority_ids"].append(ext.get("valueString"))
        else:
            out.bad(f"{where}.extension[{n}]", "Not an extension this server stores on a Goal.")
    goal_id = _uuid_identifier(goal, where, out)
    if goal_id:
        g["id"] = goal_id
    return g


def _contained_result(obs: dict, where: str, out: Mapped) -> dict:
    allowed = {"resourceType", "id", "identifier", "status", "code", "subject", "effectiveDateTime", "valueQuantity",
               "valueString", "meta"}
    for name in sorted(set(obs) - allowed):
        out.bad(f"{where}.{name}", "Not stored by this server.")
    if obs.get("status", "final") != "final":
        out.bad(f"{where}.status", "A result shared with the person is final.")
    r = {"name": (obs.get("code") or {}).get("text")}
    if "valueQuantity" in obs:
        q = obs["valueQuantity"] if isinstance(obs["valueQuantity"], dict) else {}
        r["value"], r["unit"] = (str(q["value"]) if isinstance(q.get("value"), (int, float)) else None), q.get("unit")
    else:
        r["value"], r["unit"] = obs.get("valueString"), None
    if obs.get("effectiveDateTime") is not None:
        if not (isinstance(obs["effectiveDateTime"], str) and DATE.match(obs["effectiveDateTime"])):
            out.bad(f"{where}.effectiveDateTime", "A date (YYYY-MM-DD): results are kept by the day they were taken.")
        r["taken_on"] = obs["effectiveDateTime"]
    result_id = _uuid_identifier(obs, where, out)
    if result_id:
        r["id"] = result_id
    return r


def _parts(resource: dict, element: str, kind: str, current: list[dict], plan_id: str | None, out: Mapped,
           contained: dict, reader, fields: dict, body_field: str) -> list[dict]:
    """Goals (or results): a reference to one of the plan's own keeps it; '#id' names a contained one."""
    items = []
    refs = resource.get(element) or []
    if not isinstance(refs, list):
        out.bad(f"CarePlan.{element}", "A list of references.")
        return items
    own = {i["id"]: i for i in current}
    for n, ref in enumerate(refs):
        reference = ref.get("reference", "") if isinstance(ref, dict) else ""
        if reference.startswith("#") and reference[1:] in contained:
            index, res = contained[reference[1:]]
            if res.get("resourceType") != kind:
                out.bad(f"CarePlan.{element}[{n}]", f"Must name a contained {kind}.")
                continue
            where = f"CarePlan.contained[{index}]"
            out.origin[f"{body_field}.{len(items)}"] = (where, fields)
            items.append(reader(res, where, out))
            continue
        parts = split_part_id(reference.removeprefix(f"{kind}/")) if reference.startswith(f"{kind}/") else None
        if parts and parts[0] == plan_id and parts[1] in own:
            out.origin[f"{body_field}.{len(items)}"] = (f"CarePlan.{element}[{n}]", fields)
            items.append(dict(own[parts[1]]))
            continue
        out.bad(f"CarePlan.{element}[{n}]", f"Reference a contained {kind} ('#id') or one of this plan's own "
                                            f"({kind}/<id> as read from it).")
    return items


def _activity(activity, n: int, out: Mapped) -> dict:
    where = f"CarePlan.activity[{n}]"
    if not isinstance(activity, dict) or set(activity) - {"id", "detail"}:
        out.bad(where, "An activity is stored from its detail only (not reference, outcome or progress).")
        return {}
    detail = activity.get("detail") if isinstance(activity.get("detail"), dict) else {}
    allowed = {"extension", "status", "description", "performer", "scheduledPeriod"}
    for name in sorted(set(detail) - allowed):
        out.bad(f"{where}.detail.{name}", "Not stored by this server.")
    owner = next((e.get("valueCode") for e in detail.get("extension") or [] if _ext_name(e) == "action-owner"), None)
    if owner is None:
        performers = detail.get("performer") or []
        owner = "person" if any(str(p.get("reference", "")).startswith("Patient/") for p in performers
                                if isinstance(p, dict)) else None
    if owner is None:
        out.bad(f"{where}.detail.extension", f"Say who does it: extension {EXT}action-owner (person, practice "
                                             "or community).")
    a = {"text": detail.get("description"), "owner": owner,
         "status": ACTION_IN.get(detail.get("status"), detail.get("status") or "to_do"),
         "due": (detail.get("scheduledPeriod") or {}).get("end")}
    if detail.get("status") is not None and detail["status"] not in ACTION_IN:
        out.bad(f"{where}.detail.status", f"One of {', '.join(ACTION_IN)}.")
    if activity.get("id"):
        a["id"] = activity["id"]
    out.origin[f"actions.{n}"] = (f"{where}.detail", ACTION_FIELDS)
    return a


def map_care_plan(resource, nhs_number: str, current: dict | None = None) -> Mapped:
    """The plans API's view of a CarePlan sent for the person ``nhs_number`` (``current``: the plan
    it replaces, on an update)."""
    out = Mapped()
    if not isinstance(resource, dict) or resource.get("resourceType") != "CarePlan":
        out.bad("CarePlan", "Send a CarePlan resource (resourceType CarePlan).")
        return out
    for name in sorted(set(resource) - MAPPED - READ_ONLY):
        out.bad(f"CarePlan.{name}", "Not stored by this server (docs/fhir.md lists what is).")
    if resource.get("intent") != "plan":
        out.bad("CarePlan.intent", "A care and support plan's intent is plan.")
    out.status = STATUS_IN.get(resource.get("status"))
    if out.status is None:
        out.bad("CarePlan.status", f"One of {', '.join(STATUS_IN)}.")
    subject = resource.get("subject") or {}
    named = {(subject.get("identifier") or {}).get("value"), str(subject.get("reference", "")).removeprefix("Patient/")}
    if nhs_number not in named or not named - {None, ""} <= {nhs_number}:
        out.bad("CarePlan.subject", "The plan's person cannot change: name the same person.")
    content: dict = {"priorities": [], "conditions": []}
    for key in ("next_review_date", "results_shared_at", "care_coordinator"):
        content[key] = None
    for n, ext in enumerate(resource.get("extension") or []):
        name = _ext_name(ext)
        where = f"CarePlan.extension[{n}]"
        if name not in PLAN_EXTENSIONS:
            out.bad(where, "Not an extension this server stores on a CarePlan.")
        elif name == "what-matters":
            out.origin[f"priorities.{len(content['priorities'])}"] = (where, PRIORITY_FIELDS)
            content["priorities"].append(_priority(ext, where, out))
        elif name == "agreement":
            parts = {p.get("url"): _value(p) for p in ext.get("extension") or [] if isinstance(p, dict)}
            out.agreement = {"agreed_by": parts.get("agreedBy"), "person_agreed": parts.get("personAgreed")}
        elif name == "status-reason":
            out.reason = ext.get("valueString")
        else:
            key = name.replace("-", "_")
            out.origin[key] = (where, {})
            content[key] = _value(ext)
    for n, address in enumerate(resource.get("addresses") or []):
        display = address.get("display") if isinstance(address, dict) else None
        if not isinstance(display, str) or set(address) - {"display"}:
            out.bad(f"CarePlan.addresses[{n}]", "A condition is kept by its display text only.")
        out.origin[f"conditions.{n}"] = (f"CarePlan.addresses[{n}].display", {})
        content["conditions"].append(display)
    contained = {}
    for n, res in enumerate(resource.get("contained") or []):
        if not isinstance(res, dict) or res.get("resourceType") not in ("Goal", "Observation") or not res.get("id"):
            out.bad(f"CarePlan.contained[{n}]", "Only Goals and Observations with an id may be contained.")
            continue
        contained[res["id"]] = (n, res)
    current = current or {}
    content["goals"] = _parts(resource, "goal", "Goal", current.get("goals") or [], current.get("id"), out, contained,
                              _contained_goal, GOAL_FIELDS, "goals")
    content["results"] = _parts(resource, "supportingInfo", "Observation", current.get("results") or [],
                                current.get("id"), out, contained, _contained_result, RESULT_FIELDS, "results")
    content["actions"] = [_activity(a, n, out) for n, a in enumerate(resource.get("activity") or [])]
    out.content = content
    return out
