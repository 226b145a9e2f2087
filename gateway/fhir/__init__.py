"""The FHIR R4 server at ``/fhir/R4``: one more door to the same access decision (gateway/policy/).

One module per job: ``capability`` (the CapabilityStatement), ``patients`` (Patient, $everything,
$summary), ``search`` (searches), ``plan_reads`` and ``plan_writes`` (CarePlan, Goal, Observation),
``records`` (Account, Task, EpisodeOfCare), ``subscriptions`` and ``notifications`` (the Subscriptions
Backport IG on the webhook dispatcher), ``outcomes`` (every error as an OperationOutcome), ``subject``
(where the access decision finds the person), ``export`` (the older ``/v1/people/{nhs}/fhir``). The
mapping itself is the shared ``interop`` package. docs/fhir.md describes the API.
"""
from __future__ import annotations

from flask import Blueprint

bp = Blueprint("fhir_server", __name__, url_prefix="/fhir/R4")


def init_app(app) -> None:
    from . import capability, patients, plan_reads, plan_writes, records, search, subscriptions  # noqa: F401
    from .outcomes import as_operation_outcome
    app.register_blueprint(bp)
    app.after_request(as_operation_outcome)
