"""The plans service: ``create_app`` wires the kernel, the database and the routes."""
from __future__ import annotations

from coproduction.config import Settings
from coproduction.feed import feed_blueprint
from coproduction.http import create_app as kernel_app

from . import SPEC, events  # noqa: F401  (events registers the event schemas)
from .api import bp
from .models import Base, idempotency_keys, outbox

metadata = Base.metadata


def create_app(settings: Settings | None = None):
    settings = settings or Settings.from_env(SPEC.name)
    db = SPEC.database(settings)
    return kernel_app(SPEC.name, f"coproduction {SPEC.name}", settings=settings, db=db, metadata=metadata,
                      blueprints=[bp, feed_blueprint()],
                      tables={"outbox": outbox, "idempotency_keys": idempotency_keys},
                      description=SPEC.description)
