"""The event envelope (CloudEvents 1.0, structured JSON) and the shared Priority shape.

Producers declare one marshmallow schema per event type in their own ``events.py`` and register
it here with :func:`event_type`; :func:`make_event` validates ``data`` against it before the event
is written to the outbox, so a producer can never publish a payload that breaks its own contract.
"""
from __future__ import annotations

import json
import re
import uuid
from datetime import datetime, timezone

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from .nhs_number import NHSNumber
from .shapes import TolerantSchema

SPECVERSION = "1.0"
CONTENT_TYPE = "application/cloudevents+json"
TRACEPARENT = re.compile(r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")
EVENT_TYPE = re.compile(r"^[a-z]+\.[a-z][a-z-]*$")

PRIORITY_CATEGORIES = (
    "physical_activity", "mental_wellbeing", "weight_and_diet", "managing_my_condition",
    "medicines", "family_and_relationships", "social_connection", "work_and_money",
    "independence_at_home", "mobility_and_transport", "housing", "learning_and_hobbies",
    "end_of_life", "other",
)
EXPRESSED_BY = ("person", "representative", "professional")
PRIORITY_STATUSES = ("proposed", "active", "on_hold", "achieved", "cancelled")

#: event type -> (schema class of its data, schema version)
REGISTRY: dict[str, tuple[type[Schema], int]] = {}


def now() -> datetime:
    return datetime.now(timezone.utc)


def iso(moment: datetime) -> str:
    """RFC 3339 UTC; a naive time (SQLite gives those back) is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


class StrictBoolean(fields.Boolean):
    """JSON true or false, nothing else: marshmallow's Boolean also takes 0, 1, "yes", "off"..., which
    the OpenAPI (type: boolean) does not promise and a client should not come to rely on."""

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value


class PrioritySchema(TolerantSchema):
    """What matters to the person, in the shape every service shares."""

    id = fields.UUID(load_default=None)
    text = fields.String(required=True, validate=validate.Length(min=1, max=500))
    category = fields.String(required=True, validate=validate.OneOf(PRIORITY_CATEGORIES))
    expressed_by = fields.String(load_default="person", validate=validate.OneOf(EXPRESSED_BY))
    rank = fields.Integer(load_default=None, allow_none=True, validate=validate.Range(min=1, max=100))
    status = fields.String(load_default="active", validate=validate.OneOf(PRIORITY_STATUSES))
    recorded_at = fields.AwareDateTime(load_default=None, format="iso")


def stamp_priorities(priorities: list[dict], at: datetime | None = None) -> list[dict]:
    """Give each loaded priority an id and a recorded time if it came without, as JSON-ready dicts."""
    at = at or now()
    out = []
    for p in priorities:
        out.append({
            "id": str(p.get("id") or uuid.uuid4()),
            "text": p["text"],
            "category": p["category"],
            "expressed_by": p.get("expressed_by", "person"),
            "rank": p.get("rank"),
            "status": p.get("status", "active"),
            "recorded_at": iso(p.get("recorded_at") or at),
        })
    return out


class PriorityOut(TolerantSchema):
    """Priority as it travels in an event (already stamped)."""

    id = fields.String(required=True)
    text = fields.String(required=True, validate=validate.Length(min=1, max=500))
    category = fields.String(required=True)
    expressed_by = fields.String(required=True, validate=validate.OneOf(EXPRESSED_BY))
    rank = fields.Integer(allow_none=True)
    status = fields.String(required=True, validate=validate.OneOf(PRIORITY_STATUSES))
    recorded_at = fields.String(required=True)


class EnvelopeSchema(TolerantSchema):
    """A CloudEvents 1.0 structured-mode event, with our extensions."""

    specversion = fields.String(required=True, validate=validate.Equal(SPECVERSION))
    id = fields.UUID(required=True)
    source = fields.String(required=True, validate=validate.Regexp(r"^/services/[a-z]+$"))
    type = fields.String(required=True, validate=validate.Regexp(EVENT_TYPE))
    subject = NHSNumber(required=True)
    time = fields.AwareDateTime(required=True, format="iso")
    datacontenttype = fields.String(required=True, validate=validate.Equal("application/json"))
    dataschema = fields.String(required=True, validate=validate.Regexp(r"^urn:coproduction:"))
    aggregateid = fields.String(required=True, validate=validate.Length(min=1, max=64))
    aggregateversion = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))
    traceparent = fields.String(load_default=None, validate=validate.Regexp(TRACEPARENT))
    data = fields.Dict(required=True)

    @validates_schema
    def _source_matches_type(self, value, **kwargs):
        prefix = value["type"].split(".")[0]
        if not service_of(value).startswith(prefix):
            raise ValidationError(f"type {value['type']} does not belong to source {value['source']}",
                                  "type")


def service_of(event: dict) -> str:
    """The name of the service an event comes from (its ``source`` is ``/services/<name>``)."""
    return event["source"].rsplit("/", 1)[-1]


class InvalidEvent(Exception):
    """An event that can never be processed: the reason is kept with it in the dead letters."""


def event_type(name: str, version: int = 1):
    """Class decorator registering a producer's data schema for an event type."""
    def register(schema_cls: type[Schema]) -> type[Schema]:
        REGISTRY[name] = (schema_cls, version)
        return schema_cls
    return register


def dataschema_for(type_: str, version: int = 1) -> str:
    return f"urn:coproduction:events:{type_}:v{version}"


_INSTANCES: dict[type[Schema], Schema] = {}


def _instance(schema_cls: type[Schema]) -> Schema:
    """One instance per schema class: building a marshmallow schema costs more than validating with
    it, and an instance holds no state between loads (marshmallow 4 has no context)."""
    schema = _INSTANCES.get(schema_cls)
    if schema is None:
        schema = _INSTANCES[schema_cls] = schema_cls()
    return schema


def make_event(*, source: str, type: str, subject: str, aggregate_id: str,
               aggregate_version: int, data: dict, traceparent: str | None = None) -> dict:
    """Build a validated CloudEvent ready for the outbox."""
    schema_cls, version = REGISTRY[type]
    errors = _instance(schema_cls).validate(data)
    if errors:
        raise ValueError(f"{type} data breaks its own schema: {errors}")
    event = {
        "specversion": SPECVERSION,
        "id": str(uuid.uuid4()),
        "source": f"/services/{source}",
        "type": type,
        "subject": subject,
        "time": iso(now()),
        "datacontenttype": "application/json",
        "dataschema": dataschema_for(type, version),
        "aggregateid": str(aggregate_id),
        "aggregateversion": aggregate_version,
        "data": data,
    }
    if traceparent and TRACEPARENT.match(traceparent):
        event["traceparent"] = traceparent
    return event


def parse_event(body: bytes | str) -> dict:
    """Decode and validate an envelope; raise InvalidEvent naming what is wrong."""
    try:
        raw = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidEvent(f"not JSON: {exc}") from None
    except RecursionError:  # Python's parser recurses: a poison message 10,000 arrays deep
        raise InvalidEvent("not JSON this service can read: nested too deeply") from None
    if not isinstance(raw, dict):
        raise InvalidEvent("envelope is not a JSON object")
    errors = _instance(EnvelopeSchema).validate(raw)
    if errors:
        raise InvalidEvent(f"bad envelope: {json.dumps(errors, sort_keys=True)}")
    return raw


def dumps(event: dict) -> bytes:
    return json.dumps(event, separators=(",", ":"), sort_keys=True).encode()
