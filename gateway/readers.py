"""The gateway's own tolerant readers of every event type it consumes.

Consumers own their readers: unknown fields are ignored, missing required ones make the event
invalid (it goes to the dead letters with the reason). Contract tests load every producer's
SAMPLE through these readers.
"""
from __future__ import annotations

from marshmallow import EXCLUDE, Schema, fields


class PriorityIn(Schema):
    class Meta:
        unknown = EXCLUDE

    id = fields.String(required=True)
    text = fields.String(required=True)
    category = fields.String(required=True)
    expressed_by = fields.String(load_default="person")
    rank = fields.Integer(allow_none=True, load_default=None)
    status = fields.String(load_default="active")
    recorded_at = fields.String(load_default="")


class Tolerant(Schema):
    class Meta:
        unknown = EXCLUDE

    priorities = fields.List(fields.Nested(PriorityIn), required=True)


class PlanIn(Tolerant):
    plan_id = fields.String(required=True)
    status = fields.String(required=True)
    conditions = fields.List(fields.String(), load_default=list)
    goals = fields.List(fields.Dict(), load_default=list)
    actions = fields.List(fields.Dict(), load_default=list)
    next_review_date = fields.String(allow_none=True, load_default=None)
    care_coordinator = fields.String(allow_none=True, load_default=None)
    agreed_by = fields.String(allow_none=True, load_default=None)
    person_agreed = fields.Boolean(allow_none=True, load_default=None)
    agreed_at = fields.String(allow_none=True, load_default=None)


def binding_keys() -> list[str]:
    prefixes = sorted({t.split(".")[0] for t in READERS})
    return [f"{p}.*" for p in prefixes]


#: event type -> (service, kind of aggregate, reader). Each service's section below adds its types.
READERS: dict[str, tuple[str, str, type[Schema]]] = {}

# -- plans --------------------------------------------------------------------------------------
READERS.update({t: ("plans", "plan", PlanIn)
                for t in ("plan.created", "plan.agreed", "plan.revised", "plan.closed")})
