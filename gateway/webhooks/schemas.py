"""The shapes of ``/v1/subscriptions``: what a client sends and what it is answered."""
from __future__ import annotations

import marshmallow as ma
from marshmallow import RAISE, validate

from .models import DELIVERY_STATUSES


class SubscriptionCreateSchema(ma.Schema):
    class Meta:
        unknown = RAISE

    url = ma.fields.String(required=True, validate=validate.Length(min=1, max=2000),
                           metadata={"description": "http(s) callback; must resolve to public addresses"})
    types = ma.fields.List(ma.fields.String(validate=validate.Length(min=1, max=64)), required=True,
                           validate=validate.Length(min=1, max=20),
                           metadata={"description": 'event type patterns, fnmatch style: ["budget.*"]'})
    description = ma.fields.String(load_default=None, allow_none=True, validate=validate.Length(max=500))


class SubscriptionSchema(ma.Schema):
    id = ma.fields.String()
    url = ma.fields.String()
    types = ma.fields.List(ma.fields.String())
    description = ma.fields.String(allow_none=True)
    status = ma.fields.String(metadata={"description": "active | failing | disabled"})
    status_reason = ma.fields.String(allow_none=True)
    cursor = ma.fields.String(metadata={"description": "the change-log cursor fanned out up to: events after "
                                                       "it become deliveries as they arrive"})
    replaying = ma.fields.Boolean()
    pending = ma.fields.Integer(metadata={"description": "deliveries not yet accepted by the receiver"})
    version = ma.fields.Integer()
    created_at = ma.fields.String()
    updated_at = ma.fields.String()


class SubscriptionCreatedSchema(SubscriptionSchema):
    secret = ma.fields.String(metadata={"description": "whsec_<base64>: shown once, in this response only"})


class ListQuery(ma.Schema):
    class Meta:
        unknown = RAISE

    limit = ma.fields.Integer(load_default=50, validate=validate.Range(min=1, max=500))
    cursor = ma.fields.String(load_default=None, validate=validate.Length(max=200))


class SubscriptionListSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(SubscriptionSchema))
    next_cursor = ma.fields.String(allow_none=True)


class DeliveryQuery(ListQuery):
    status = ma.fields.String(load_default=None, validate=validate.OneOf(DELIVERY_STATUSES))


class AttemptSchema(ma.Schema):
    attempt = ma.fields.Integer()
    at = ma.fields.String()
    outcome = ma.fields.String(metadata={"description": "delivered | failed | gone | refused"})
    status_code = ma.fields.Integer(allow_none=True)
    error = ma.fields.String(allow_none=True)
    duration_ms = ma.fields.Integer()
    next_attempt_at = ma.fields.String(allow_none=True)
    response = ma.fields.String(allow_none=True)


class DeliverySchema(ma.Schema):
    id = ma.fields.String(metadata={"description": "the webhook-id header, the same on every retry"})
    event_id = ma.fields.String(allow_none=True, metadata={"description": "null when withheld"})
    type = ma.fields.String(allow_none=True, metadata={"description": "null when withheld"})
    subject = ma.fields.String(allow_none=True, metadata={"description": "null when withheld"})
    cursor = ma.fields.String(metadata={"description": "the event's change-log cursor (as GET /v1/changes "
                                                       "writes them): replay after it to resend what follows"})
    replay = ma.fields.Boolean()
    status = ma.fields.String(metadata={"description": "pending | delivered | withheld"})
    attempt_count = ma.fields.Integer()
    next_attempt_at = ma.fields.String(allow_none=True)
    last_status_code = ma.fields.Integer(allow_none=True)
    last_error = ma.fields.String(allow_none=True)
    created_at = ma.fields.String()
    delivered_at = ma.fields.String(allow_none=True)
    attempts = ma.fields.List(ma.fields.Nested(AttemptSchema))


class DeliveryListSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(DeliverySchema))
    next_cursor = ma.fields.String(allow_none=True)


class ReplaySchema(ma.Schema):
    class Meta:
        unknown = RAISE

    after = ma.fields.Raw(load_default=None, allow_none=True, metadata={
        "description": "a change-log cursor: a next_cursor of GET /v1/changes, a delivery's cursor, or 0 "
                       "for the start; every matching event after it is sent again. Omitted: only "
                       "re-enable the subscription and resend what is pending"})


class ReplayResultSchema(ma.Schema):
    subscription = ma.fields.Nested(SubscriptionSchema)
    after = ma.fields.String(allow_none=True)
    until = ma.fields.String(allow_none=True)
    pending = ma.fields.Integer()
