"""The access decision: one per request, made before anything is forwarded or read.

Every route the gateway serves or forwards has a rule (rules.py): the scope it needs, and where its
subject (the person) comes from. The subject is never guessed from whichever part of a request
holds an NHS number:

- ``PATH``: the route's own ``{nhs_number}``;
- ``RESOURCE``: the id in the path, looked up in the resource → person index (gateway/subjects.py);
- ``BODY``: a create: the ``nhs_number`` of the JSON body, exactly the bytes that are forwarded;
- ``QUERY``: a list filtered by a person: its one ``nhs_number`` parameter;
- ``NONE``: no personal data (courses, the site report's counts, the caller's own subscriptions);
- ``POPULATION``: lists across people that have a scope of their own; each item is then checked
  by :class:`Visibility` (visibility.py), and what is dropped is counted in the answer's ``withheld``.

For a person, the caller's organisation must have a care relationship with them (admins excepted;
creating the person's first record in an initiative establishes one), then the person's sharing
preferences must not withhold the initiative from the caller's role. A refusal is answered before
anything is forwarded, so a refused write leaves nothing behind. The decision is kept in
``g.decision``: the views read it, and the audit record names exactly its subject.

- ``rules.py``: the route rules and their kinds;
- ``decision.py``: the one decision per request (the subject, the person's standing, decide, enforce);
- ``visibility.py``: what is hidden from the caller: preferences, scrubbing, ``withheld``.

The names the rest of the gateway uses are re-exported here.
"""
from .decision import Decision, body_json, current, enforce, unprocessable
from .rules import (EMERGENCY, FHIR, FORWARDED, NONE, PATH, PATIENT_SEARCH, PERSONAL, POPULATION, PUBLIC, QUERY,
                    RULES, SHAREABLE, Rule, may_read, rule_for_request)
from .visibility import Visibility, scrub, scrub_value

__all__ = ["Decision", "EMERGENCY", "FHIR", "FORWARDED", "NONE", "PATH", "PATIENT_SEARCH", "PERSONAL", "POPULATION",
           "PUBLIC", "QUERY", "RULES", "SHAREABLE", "Rule", "Visibility", "body_json", "current", "enforce",
           "may_read", "rule_for_request", "scrub", "scrub_value", "unprocessable"]
