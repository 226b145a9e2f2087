"""The decisions service: ``create_app`` wires the kernel, the database and the routes."""
from __future__ import annotations

from coproduction.config import Settings
from coproduction.feed import feed_blueprint
from coproduction.http import create_app as kernel_app
from coproduction.service import ServiceSpec

from . import events  # noqa: F401  (registers the event schemas)
from .api import bp
from .models import Base, idempotency_keys, outbox


def create_app(settings: Settings | None = None):
    settings = settings or Settings.from_env("decisions")
    db = SPEC.database(settings)
    return kernel_app("decisions", "coproduction decisions", settings=settings, db=db, metadata=Base.metadata,
                      blueprints=[bp, feed_blueprint()],
                      tables={"outbox": outbox, "idempotency_keys": idempotency_keys},
                      description="Shared decision-making (NICE NG197)")


SPEC = ServiceSpec("decisions", Base.metadata, create_app)
