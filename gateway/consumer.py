"""The gateway's consumer: service events into the portfolio projection."""
from __future__ import annotations

from coproduction.bus import Bus
from coproduction.config import Settings
from coproduction.consumer import Consumer
from coproduction.db import Database

from . import projection
from .readers import binding_keys

QUEUE = "gateway.portfolio"
#: a batch is one transaction; the broker keeps the next batch coming while one is applied
BATCH_SIZE = 500
PREFETCH = 2 * BATCH_SIZE


def make_consumer(settings: Settings, db: Database, bus: Bus) -> Consumer:
    def handle(event: dict) -> bool:
        with db.session() as session:
            return projection.apply(session, event)

    def handle_batch(events: list[dict]) -> None:
        """Every event already waiting, in one transaction (a backlog drains many times faster)."""
        with db.session() as session:
            projection.apply_many(session, events)

    return Consumer(bus, QUEUE, binding_keys(), handle, max_attempts=settings.max_attempts,
                    retry_delay_ms=settings.retry_delay_ms, prefetch=PREFETCH, batch_handler=handle_batch,
                    batch_size=BATCH_SIZE)
