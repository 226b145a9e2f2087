"""What every FHIR answer shares: the base URL, ``application/fhir+json``, and a read's ETag,
Last-Modified and ``If-None-Match``."""
from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timezone
from email.utils import format_datetime

from flask import Response, request

from coproduction.events import iso, now
from coproduction.http import Problem

from .. import policy
from ..tokens import authority

FHIR_JSON = "application/fhir+json"
FHIR_VERSION = "4.0.1"


def base_url() -> str:
    return authority().base_url() + policy.FHIR


def timestamp() -> str:
    return iso(now())


def fhir_json(body: dict, status: int = 200, headers: dict | None = None) -> Response:
    resp = Response(json.dumps(body), status=status, mimetype=FHIR_JSON)
    resp.headers["Content-Type"] = f"{FHIR_JSON}; fhirVersion=4.0"
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


def http_date(moment: str) -> str:
    parsed = datetime.fromisoformat(moment.replace("Z", "+00:00"))
    return format_datetime(parsed.astimezone(timezone.utc), usegmt=True)


def etag(version) -> str:
    return f'W/"{version}"'


def versions_named(header: str | None) -> set[str]:
    """The versions an If-Match / If-None-Match names: ``W/"3"``, ``"3"`` or a bare 3 (fhirpy's)."""
    return {tag.strip().removeprefix("W/").strip('"') for tag in (header or "").split(",") if tag.strip()}


def resource_response(resource: dict, status: int = 200, location: bool = False) -> Response:
    """A resource with ``ETag: W/"<versionId>"`` and ``Last-Modified``; 304 if If-None-Match names it."""
    meta = resource.get("meta") or {}
    headers = {"ETag": etag(meta.get("versionId"))} if meta.get("versionId") else {}
    if meta.get("lastUpdated"):
        headers["Last-Modified"] = http_date(meta["lastUpdated"])
    if location:
        headers["Location"] = f"{base_url()}/{resource['resourceType']}/{resource['id']}/_history/{meta.get('versionId')}"
    if status == 200 and meta.get("versionId") and meta["versionId"] in versions_named(request.headers.get("If-None-Match")):
        resp = Response(status=304)
        for k, v in headers.items():
            resp.headers[k] = v
        return resp
    return fhir_json(resource, status, headers)


def not_found(what: str) -> Problem:
    return Problem(404, "Not Found", f"No such {what}.")


def for_service(*scopes: str):
    """The caller as the service sees it. The policy checked the SMART scope of the FHIR route, and a
    client is granted that SMART scope only while it holds our ``scopes`` (SMART_GRANTS); the
    service checks them again."""
    caller = policy.current().caller
    return replace(caller, scopes=caller.scopes | set(scopes))


def count_param(default: int = 20, maximum: int = 100) -> int:
    raw = request.args.get("_count", str(default))
    if not raw.isdigit() or not 1 <= int(raw) <= maximum:
        raise Problem(400, "Bad Request", f"_count must be a whole number from 1 to {maximum}.",
                      errors={"_count": [f"A whole number from 1 to {maximum}."]})
    return int(raw)
