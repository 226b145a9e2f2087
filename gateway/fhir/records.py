"""Reads of a budget (``Account``), a shared decision (``Task``) and a course place (``EpisodeOfCare``).

From the gateway's own tables: the newest version from the projection, older ones from the change
log (every event carries its aggregate's whole state at that version), so these answer without the
services. The mapping is interop/fhir_care.py.
"""
from __future__ import annotations

import json
from urllib.parse import urlencode

from flask import request
from sqlalchemy import select

from coproduction.events import iso
from coproduction.http import Problem
from coproduction.service import services
from interop import fhir_care
from interop.fhir_bundles import history

from .. import policy
from ..models import aggregates, change_log
from ..projection import read as read_event
from ..security import request_session
from . import bp
from .responses import base_url, count_param, fhir_json, resource_response, timestamp

#: resource -> (service, event type prefix, mapping)
RECORDS = {spec.fhir_resource: (spec.name, spec.event_prefix + ".", fhir_care.MAPPINGS[spec.fhir_resource])
           for spec in services() if spec.fhir_resource in fhir_care.MAPPINGS}


def _map(resource_type: str, nhs_number: str, section: dict) -> dict:
    service, _prefix, mapping = RECORDS[resource_type]
    if resource_type == "Account":
        return mapping(nhs_number, section, plan_visible="plans" not in policy.current().unseen)
    return mapping(nhs_number, section)


def _versions(resource_type: str, resource_id: str) -> list[dict]:
    """Every version the change log holds of this record, oldest first, as sections."""
    service, prefix, _mapping = RECORDS[resource_type]
    nhs = policy.current().subject
    rows = request_session().execute(select(change_log.c.body).where(
        change_log.c.subject == nhs, change_log.c.type.like(prefix + "%")).order_by(change_log.c.position)).scalars()
    versions = {}
    for body in rows:
        event = json.loads(body)
        if event["aggregateid"] != resource_id:
            continue
        _service, _kind, data = read_event(event)
        versions[event["aggregateversion"]] = dict(data, id=resource_id, version=event["aggregateversion"],
                                                   updated_at=event["time"])
    return [versions[v] for v in sorted(versions)]


def read(resource_type: str, resource_id: str):
    service = RECORDS[resource_type][0]
    row = request_session().execute(select(aggregates).where(
        aggregates.c.service == service, aggregates.c.aggregate_id == resource_id)).mappings().first()
    if row is None or row["nhs_number"] != policy.current().subject:
        raise Problem(404, "Not Found", f"No such {resource_type}.")
    state = {k: v for k, v in row["state"].items() if not k.startswith("_")}
    section = dict(state, id=resource_id, version=row["version"], updated_at=iso(row["event_time"]))
    return resource_response(_map(resource_type, row["nhs_number"], section))


def vread(resource_type: str, resource_id: str, version_id: str):
    for section in _versions(resource_type, resource_id):
        if str(section["version"]) == version_id:
            return resource_response(_map(resource_type, policy.current().subject, section))
    raise Problem(404, "Not Found", f"No version {version_id} of this {resource_type}.")


def instance_history(resource_type: str, resource_id: str):
    count = count_param(10, 50)
    below = request.args.get("_cursor")
    sections = list(reversed(_versions(resource_type, resource_id)))
    if not sections:
        raise Problem(404, "Not Found", f"No such {resource_type}.")
    if below is not None:
        if not below.isdigit():
            raise Problem(400, "Bad Request", "_cursor: not a cursor this server gave out.",
                          errors={"_cursor": ["Follow the Bundle's next link as given."]})
        sections = [s for s in sections if s["version"] < int(below)]
    page = sections[:count]
    path = f"{base_url()}/{resource_type}/{resource_id}/_history"
    next_url = f"{path}?{urlencode({'_count': count, '_cursor': page[-1]['version']})}" if len(sections) > count else None
    nhs = policy.current().subject
    return fhir_json(history(base_url(), [_map(resource_type, nhs, s) for s in page], timestamp=timestamp(),
                             self_url=path, next_url=next_url))


for _type in RECORDS:
    _name = _type.lower()
    bp.add_url_rule(f"/{_type}/<resource_id>", f"read_{_name}", lambda resource_id, t=_type: read(t, resource_id))
    bp.add_url_rule(f"/{_type}/<resource_id>/_history/<version_id>", f"vread_{_name}",
                    lambda resource_id, version_id, t=_type: vread(t, resource_id, version_id))
    bp.add_url_rule(f"/{_type}/<resource_id>/_history", f"history_{_name}",
                    lambda resource_id, t=_type: instance_history(t, resource_id))
