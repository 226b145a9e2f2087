"""The groups service: ``create_app`` wires the kernel, the database and the routes."""
from __future__ import annotations

from coproduction.config import Settings
from coproduction.http import create_service_app

from . import SPEC, events  # noqa: F401  (events registers the event schemas)
from .api import courses, enrolments
from .models import Base, idempotency_keys, min_of_six_from_env, outbox

metadata = Base.metadata


def create_app(settings: Settings | None = None):
    min_of_six = min_of_six_from_env()  # a bad GROUPS_COMPLETION_MIN_SESSIONS stops the start, loudly
    app = create_service_app(SPEC, settings, metadata=metadata, blueprints=[courses, enrolments],
                             tables={"outbox": outbox, "idempotency_keys": idempotency_keys})
    app.config["GROUPS_COMPLETION_MIN_SESSIONS"] = min_of_six
    return app
