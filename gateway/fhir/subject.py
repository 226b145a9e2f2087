"""Where the FHIR door's person comes from, for the access decision (gateway/policy/): a search's
one parameter naming them, or a create's ``CarePlan.subject``; never anywhere else in the request."""
from __future__ import annotations

from flask import request

from coproduction.http import Problem
from coproduction.nhs_number import is_valid

from ..policy import body_json, unprocessable

NHS_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"


def _nhs_of_identifier(value: str) -> str | None:
    system, bar, nhs = value.partition("|")
    return nhs if bar and system == NHS_SYSTEM and is_valid(nhs) else None


def _nhs_of_reference(value: str) -> str | None:
    nhs = value.removeprefix("Patient/")
    return nhs if is_valid(nhs) else None


def of_search(params: tuple[str, ...]) -> str:
    """The one search parameter naming the person: ``patient=Patient/{nhs}`` (or the bare number),
    ``subject:identifier=https://fhir.nhs.uk/Id/nhs-number|{nhs}`` …; absent, repeated, two of them,
    or not a valid NHS number: 422. A search across people is not served."""
    given = [(name, value) for name in params for value in request.args.getlist(name)]
    names = " or ".join(params)
    if len(given) != 1:
        raise unprocessable(params[0], f"Give the person once, with one of {names} (a search across "
                             "people is not served).")
    name, value = given[0]
    nhs = _nhs_of_identifier(value) if name.endswith("identifier") else _nhs_of_reference(value)
    if nhs is None:
        how = ("https://fhir.nhs.uk/Id/nhs-number|<NHS number>" if name.endswith("identifier")
               else "Patient/<NHS number>")
        raise unprocessable(name, f"Not a valid NHS number: write it as {how}.")
    return nhs


def of_create() -> str:
    """A FHIR create's person: ``CarePlan.subject``, as an NHS number identifier or a reference to
    Patient/{nhs} (both: the same person), read from exactly the bytes that are mapped."""
    if not request.is_json:
        raise Problem(415, "Unsupported Media Type", "A create is sent as application/fhir+json.")
    body = body_json()
    subject = body.get("subject") if isinstance(body, dict) else None
    found = set()
    if isinstance(subject, dict):
        identifier = subject.get("identifier")
        if isinstance(identifier, dict) and isinstance(identifier.get("system"), str) \
                and isinstance(identifier.get("value"), str):
            found.add(_nhs_of_identifier(f"{identifier['system']}|{identifier['value']}"))
        if isinstance(subject.get("reference"), str):
            found.add(_nhs_of_reference(subject["reference"]))
    if len(found) != 1 or None in found:
        raise unprocessable("CarePlan.subject", "Name the person once: an identifier with system "
                             "https://fhir.nhs.uk/Id/nhs-number and a valid NHS number, or a reference "
                             "Patient/<NHS number> (both, if both are given, the same person).")
    return found.pop()
