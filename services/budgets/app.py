"""The budgets service: ``create_app`` wires the kernel, the database and the routes."""
from __future__ import annotations

from coproduction.config import Settings
from coproduction.feed import feed_blueprint
from coproduction.http import create_app as kernel_app
from coproduction.service import ServiceSpec

from . import events  # noqa: F401  (registers the event schemas)
from .api import bp
from .models import Base, idempotency_keys, outbox


def create_app(settings: Settings | None = None):
    settings = settings or Settings.from_env("budgets")
    db = SPEC.database(settings)
    return kernel_app("budgets", "coproduction budgets", settings=settings, db=db, metadata=Base.metadata,
                      blueprints=[bp, feed_blueprint()],
                      tables={"outbox": outbox, "idempotency_keys": idempotency_keys},
                      description="Personal health budgets (and Care Act personal budgets): money agreed "
                                  "with the person, tied to their plan, spent on what serves their priorities")


SPEC = ServiceSpec("budgets", Base.metadata, create_app)
