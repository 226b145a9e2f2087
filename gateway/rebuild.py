"""``coproduction rebuild``: throw the projection away and rebuild it from every service's feed.

The services' outboxes are their event logs (``GET /v1/events?after=N``). The rebuild empties the
gateway's read model (inbox, change log, aggregates, portfolios), replays each service's feed page
by page through the same ``apply_many`` the consumer uses, then recomposes every portfolio.

The consumer may keep running throughout: the inbox decides which of the two applies an event
first, the other skips it, so events arriving during the rebuild are neither lost nor doubled.
Events still queued when the rebuild ends are consumed as usual.
"""
from __future__ import annotations

import sys
import time

import requests
from sqlalchemy import delete, select, text

from coproduction.auth import ROLES, Caller, issue_service_token
from coproduction.config import DOMAIN_SERVICES, Settings
from coproduction.db import Database

from .models import aggregates, change_log, inbox, portfolios
from .projection import CONSUMER, apply_many, recompose_many

REBUILDER = Caller("rebuild", "coproduction rebuild", "LOCAL", "admin", frozenset(ROLES["admin"]))


class Progress:
    def __init__(self, stream=sys.stderr, width: int = 30):
        self.stream = stream
        self.width = width
        self.started = time.monotonic()
        self.interactive = stream.isatty()
        self._last = 0.0

    def show(self, label: str, done: int, total: int, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < (0.2 if self.interactive else 5):
            return
        self._last = now
        fraction = done / total if total else 1.0
        filled = int(self.width * fraction)
        rate = done / max(now - self.started, 1e-6)
        line = f"{label:<10} [{'#' * filled}{'-' * (self.width - filled)}] {done:,}/{total:,} ({rate:,.0f}/s)"
        self.stream.write(("\r" if self.interactive else "") + line + ("" if self.interactive else "\n"))
        self.stream.flush()

    def end(self) -> None:
        if self.interactive:
            self.stream.write("\n")


def wipe(db: Database) -> None:
    with db.session() as session:
        for table in (portfolios, aggregates, change_log):
            session.execute(delete(table))
        session.execute(delete(inbox).where(inbox.c.consumer == CONSUMER))


def replay(db: Database, settings: Settings, service: str, page_size: int, progress: Progress) -> int:
    """Apply a service's whole feed, page by page; the next page is fetched while one is applied."""
    from concurrent.futures import ThreadPoolExecutor
    url = settings.service_urls[service] + "/v1/events"
    http = requests.Session()

    def fetch(after: int) -> dict:
        token = issue_service_token(REBUILDER, service, settings.service_token_secret)
        try:
            r = http.get(url, params={"after": after, "limit": page_size},
                         headers={"Authorization": f"Bearer {token}"}, timeout=60)
        except requests.RequestException as exc:
            raise SystemExit(f"rebuild: the {service} service is not answering at {url} ({exc}); "
                             "every service must be up for a rebuild") from None
        if r.status_code != 200:
            raise SystemExit(f"rebuild: {service} answered {r.status_code}: {r.text[:300]}")
        return r.json()

    applied, seen = 0, 0
    with ThreadPoolExecutor(max_workers=1) as fetcher:
        pending = fetcher.submit(fetch, 0)
        while True:
            page = pending.result()
            items = page["items"]
            if not items:
                break
            pending = fetcher.submit(fetch, page["next_after"])
            with db.session() as session:
                applied += apply_many(session, [item["event"] for item in items], recompose_people=False)
            seen += len(items)
            progress.show(service, seen, max(page.get("last_position", seen), seen))
    progress.show(service, seen, seen, force=True)
    progress.end()
    return applied


def recompose_all(db: Database, progress: Progress, batch: int = 500) -> int:
    if db.is_postgres:  # the replay refilled these tables: without fresh statistics the planner
        with db.session() as session:  # scans them whole for every batch instead of using the indexes
            session.execute(text("ANALYZE aggregates, change_log"))
    with db.session() as session:
        people = session.execute(select(aggregates.c.nhs_number).distinct()).scalars().all()
    for start in range(0, len(people), batch):
        with db.session() as session:
            recompose_many(session, people[start:start + batch])
        progress.show("portfolios", min(start + batch, len(people)), len(people))
    progress.show("portfolios", len(people), len(people), force=True)
    progress.end()
    return len(people)


def rebuild(db: Database, settings: Settings, services=DOMAIN_SERVICES, page_size: int = 2000,
            stream=sys.stderr) -> dict:
    progress = Progress(stream)
    started = time.monotonic()
    wipe(db)
    counts = {service: replay(db, settings, service, page_size, progress) for service in services}
    people = recompose_all(db, progress)
    seconds = time.monotonic() - started
    return {"events": counts, "people": people, "seconds": round(seconds, 2)}
