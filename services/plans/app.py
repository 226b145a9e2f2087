"""The plans service: ``create_app`` wires the kernel, the database and the routes."""
from __future__ import annotations

from coproduction.config import Settings
from coproduction.http import create_service_app

from . import SPEC, events  # noqa: F401  (events registers the event schemas)
from .api import bp
from .models import Base, idempotency_keys, outbox

metadata = Base.metadata


def create_app(settings: Settings | None = None):
    return create_service_app(SPEC, settings, metadata=metadata, blueprints=[bp],
                              tables={"outbox": outbox, "idempotency_keys": idempotency_keys})
