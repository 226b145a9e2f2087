"""What a caller is not shown: the initiatives a person's preferences withhold, the ids of left-out
records scrubbed from an answer about one person, and :class:`Visibility` for answers that list
items across people (what it drops is counted in the answer's ``withheld``)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone

from flask import g
from sqlalchemy import or_, select

from coproduction.auth import Caller

from ..models import care_relationships, sharing
from ..models import subjects as subjects_table
from .rules import SHAREABLE, may_read


def hidden_from(prefs: dict | None, role: str) -> set[str]:
    """The initiatives a person's sharing preferences withhold from a role (admins see everything)."""
    if not prefs or role == "admin":
        return set()
    return set(prefs.get(role, []))


# -- the last line: no id of a left-out record in an answer ---------------------------------------
SCRUBBED = ("application/json", "application/fhir+json", "application/problem+json", "text/html")


def hidden_ids(session, nhs_number: str, unseen) -> set[str]:
    """The ids of the person's records in the initiatives left out for the caller."""
    if not unseen:
        return set()
    return set(session.execute(select(subjects_table.c.resource_id).where(
        subjects_table.c.nhs_number == nhs_number, subjects_table.c.service.in_(sorted(unseen)))).scalars())


def scrub_value(value, ids: set[str]):
    """``value`` with every id of ``ids`` gone: a field holding one becomes null, a text naming one
    says ``[withheld]`` (a budget's ``plan_id``, a change summary "plan_id a → b")."""
    if isinstance(value, str):
        if value in ids:
            return None
        for rid in ids:
            if rid in value:
                value = value.replace(rid, "[withheld]")
        return value
    if isinstance(value, dict):
        return {k: scrub_value(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub_value(v, ids) for v in value]
    return value


def scrub(response):
    """after_request: an answer about one person never carries the id of one of their records in an
    initiative left out for the caller, whatever refers to it (cross-references between
    initiatives, summaries). The raw bytes are searched first; most answers are sent untouched."""
    decision = g.get("decision")
    if decision is None or decision.subject is None or not decision.unseen or response.direct_passthrough \
            or not response.mimetype or not response.mimetype.startswith(SCRUBBED):
        return response
    if decision.records is not None:  # read with the decision
        ids = {rid for service, rid in decision.records if service in decision.unseen}
    else:
        from ..security import request_session
        ids = hidden_ids(request_session(), decision.subject, decision.unseen)
    body = response.get_data()
    found = {rid for rid in ids if rid.encode() in body}
    if not found:
        return response
    if response.mimetype == "text/html":
        text = body.decode()
        for rid in found:
            text = text.replace(rid, "[withheld]")
        response.set_data(text.encode())
    else:
        response.set_data(json.dumps(scrub_value(json.loads(body), found)).encode())
    return response


# -- the second line: answers that list items -----------------------------------------------------
@dataclass
class Visibility:
    """Which people's items of which initiatives a caller may see: relationship, scope, preferences,
    read for a whole page of people at once."""

    caller: Caller
    related: set[str] = field(default_factory=set)
    prefs: dict[str, dict] = field(default_factory=dict)

    @classmethod
    def of(cls, session, caller: Caller, people) -> "Visibility":
        people = sorted(set(people))
        seen = cls(caller)
        if not people:
            return seen
        at = datetime.now(timezone.utc)
        r = care_relationships
        if caller.role != "admin":
            seen.related = set(session.execute(select(r.c.nhs_number).where(
                r.c.nhs_number.in_(people), r.c.org == caller.org, r.c.ended_at.is_(None),
                or_(r.c.expires_at.is_(None), r.c.expires_at > at))).scalars())
        seen.prefs = dict(session.execute(select(sharing.c.nhs_number, sharing.c.withhold)
                                          .where(sharing.c.nhs_number.in_(people))).all())
        return seen

    def allows(self, nhs_number: str, initiative: str | None) -> bool:
        if initiative in SHAREABLE and not may_read(self.caller, initiative):
            return False
        if self.caller.role != "admin" and nhs_number not in self.related:
            return False
        return initiative not in hidden_from(self.prefs.get(nhs_number), self.caller.role)

    def hidden_ids(self, session, people) -> dict[str, set[str]]:
        """Per person, the ids of their records the caller may not see: an item it may see can still
        refer to one (a budget's ``plan_id``), and :func:`scrub_value` takes them out of it."""
        people = sorted(set(people))
        hidden: dict[str, set[str]] = {nhs: set() for nhs in people}
        if people:
            for nhs, service, rid in session.execute(select(
                    subjects_table.c.nhs_number, subjects_table.c.service, subjects_table.c.resource_id)
                    .where(subjects_table.c.nhs_number.in_(people))):
                if not self.allows(nhs, service):
                    hidden[nhs].add(rid)
        return hidden
