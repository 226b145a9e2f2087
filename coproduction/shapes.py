"""The two kinds of marshmallow schema the platform declares: :class:`StrictSchema`, a request
body that refuses a field it does not know, and :class:`TolerantSchema`, a shape that drops one
(an event's data, which a newer producer may extend, and the representations we return)."""
from __future__ import annotations

from marshmallow import EXCLUDE, RAISE, Schema


class StrictSchema(Schema):
    class Meta:
        unknown = RAISE


class TolerantSchema(Schema):
    class Meta:
        unknown = EXCLUDE
