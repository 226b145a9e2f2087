"""Every error on the FHIR door is an OperationOutcome with the status it would have had.

The gateway answers refusals as RFC 9457 problem+json wherever they arise (the access policy,
authentication, the rate limit, Flask's own 404 and 405, a service's answer). On a ``/fhir/`` path
that answer is rewritten, after everything else has run, into an OperationOutcome: each field error
becomes an issue whose ``expression`` names the element, the status and headers (``Allow``,
``Retry-After``, ``WWW-Authenticate``, ``ETag``) stay as they were.
"""
from __future__ import annotations

import json

from flask import request

from coproduction.http import PROBLEM
from interop.fhir_bundles import operation_outcome

from .responses import FHIR_JSON


def as_operation_outcome(response):
    """after_request: problem+json on a /fhir/ path becomes an OperationOutcome."""
    if not request.path.startswith("/fhir/") or response.mimetype != PROBLEM:
        return response
    try:
        problem = json.loads(response.get_data())
    except ValueError:
        problem = {}
    detail = problem.get("detail") or problem.get("title") or "The request could not be served."
    errors = problem.get("errors") if isinstance(problem.get("errors"), dict) else None
    response.set_data(json.dumps(operation_outcome(response.status_code, detail, errors)).encode())
    response.mimetype = FHIR_JSON
    return response
