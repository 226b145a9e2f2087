"""Reads of a plan's resources: ``CarePlan``, ``Goal`` and ``Observation`` (read, vread, _history).

Asked of the plans service (its ``/v1/plans/{id}`` and ``/versions``), so a read after a write is
current at once. A Goal or an Observation is part of its plan: its versions are the plan's versions
(``_history/{vid}`` is the plan's version ``vid``; a version in which it was not part of the plan is
404, and one removed from the plan since reads as 410 Gone).
"""
from __future__ import annotations

from urllib.parse import urlencode

from flask import request

from coproduction.http import Problem
from interop import fhir_plans
from interop.fhir_bundles import history

from .. import policy
from ..routing import call_service
from . import bp
from .responses import base_url, count_param, fhir_json, for_service, resource_response, timestamp

PARTS = {"Goal": ("goals", fhir_plans.goal), "Observation": ("results", fhir_plans.result)}


def _plans(path: str, query: str = ""):
    upstream = call_service("plans", "GET", path, for_service("plans:read"), query=query)
    if upstream.status_code == 404:
        raise Problem(404, "Not Found", "No such version of this resource." if "/versions/" in path
                      else "No such resource.")
    if upstream.status_code != 200:
        raise Problem(502 if upstream.status_code >= 500 else upstream.status_code, "Bad Gateway",
                      f"The plans service answered {upstream.status_code}.")
    body = upstream.json()
    if isinstance(body, dict) and body.get("nhs_number") not in (None, policy.current().subject):
        raise Problem(502, "Bad Gateway", "The plans service answered with a record of another person.")
    return body


def _version_number(version_id: str) -> int:
    if not version_id.isdigit() or len(version_id) > 9:
        raise Problem(404, "Not Found", f"No version {version_id} of this resource.")
    return int(version_id)


def _resource(resource_type: str, plan: dict, item_id: str | None):
    """The resource of this type in one version of the plan (None: not part of that version)."""
    if resource_type == "CarePlan":
        return fhir_plans.care_plan(plan, fhir_plans.SERVER)
    field, mapping = PARTS[resource_type]
    for item in plan.get(field) or []:
        if item.get("id") == item_id:
            return mapping(plan, item, fhir_plans.SERVER)
    return None


def _ids(resource_type: str, view_args: dict) -> tuple[str, str | None]:
    if resource_type == "CarePlan":
        return view_args["resource_id"], None
    parts = fhir_plans.split_part_id(view_args["part_id"])
    if parts is None:
        raise Problem(404, "Not Found", f"No such {resource_type}.")
    return parts


def read(resource_type: str, **view_args):
    plan_id, item_id = _ids(resource_type, view_args)
    resource = _resource(resource_type, _plans(f"/v1/plans/{plan_id}"), item_id)
    if resource is None:
        raise Problem(410, "Gone", f"This {resource_type} is no longer part of its care plan.")
    return resource_response(resource)


def vread(resource_type: str, version_id: str, **view_args):
    plan_id, item_id = _ids(resource_type, view_args)
    version = _version_number(version_id)
    resource = _resource(resource_type, _plans(f"/v1/plans/{plan_id}/versions/{version}"), item_id)
    if resource is None:
        raise Problem(404, "Not Found", f"This {resource_type} was not part of version {version} of its plan.")
    return resource_response(resource)


def instance_history(resource_type: str, **view_args):
    """The versions, newest first, ``_count`` at a time (``_cursor``: the version to start below)."""
    plan_id, item_id = _ids(resource_type, view_args)
    count = count_param(10, 50)
    listed = _plans(f"/v1/plans/{plan_id}/versions")
    numbers = sorted((v["version"] for v in listed["items"]), reverse=True)
    below = request.args.get("_cursor")
    if below is not None:
        if not below.isdigit():
            raise Problem(400, "Bad Request", "_cursor: not a cursor this server gave out.",
                          errors={"_cursor": ["Follow the Bundle's next link as given."]})
        numbers = [n for n in numbers if n < int(below)]
    versions, last = [], None
    for number in numbers:
        if len(versions) == count:
            break
        last = number
        found = _resource(resource_type, _plans(f"/v1/plans/{plan_id}/versions/{number}"), item_id)
        if found is not None:
            versions.append(found)
    path = f"{base_url()}{request.path.removeprefix(policy.FHIR)}"
    more = last is not None and any(n < last for n in numbers) and len(versions) == count
    next_url = f"{path}?{urlencode({'_count': count, '_cursor': last})}" if more else None
    return fhir_json(history(base_url(), versions, timestamp=timestamp(),
                             self_url=path + (f"?{request.query_string.decode()}" if request.query_string else ""),
                             next_url=next_url))


def _register(resource_type: str, arg: str) -> None:
    name = resource_type.lower()
    bp.add_url_rule(f"/{resource_type}/<{arg}>", f"read_{name}", lambda **kw: read(resource_type, **kw), methods=["GET"])
    bp.add_url_rule(f"/{resource_type}/<{arg}>/_history/<version_id>", f"vread_{name}",
                    lambda **kw: vread(resource_type, **kw), methods=["GET"])
    bp.add_url_rule(f"/{resource_type}/<{arg}>/_history", f"history_{name}",
                    lambda **kw: instance_history(resource_type, **kw), methods=["GET"])


_register("CarePlan", "resource_id")
_register("Goal", "part_id")
_register("Observation", "part_id")
