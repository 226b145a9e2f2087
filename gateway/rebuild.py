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
from coproduction.config import Settings
from coproduction.service import service_names
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


class _Feed:
    """One service's event feed (``GET /v1/events``), read with an admin service token."""

    def __init__(self, settings: Settings, service: str, page_size: int):
        self.service = service
        self.url = settings.service_urls[service] + "/v1/events"
        self.secret = settings.service_token_secret
        self.page_size = page_size
        self.http = requests.Session()

    def page(self, after: int) -> dict:
        token = issue_service_token(REBUILDER, self.service, self.secret)
        try:
            r = self.http.get(self.url, params={"after": after, "limit": self.page_size},
                              headers={"Authorization": f"Bearer {token}"}, timeout=60)
        except requests.RequestException as exc:
            raise SystemExit(f"rebuild: the {self.service} service is not answering at {self.url} ({exc}); "
                             "every service must be up for a rebuild") from None
        if r.status_code != 200:
            raise SystemExit(f"rebuild: {self.service} answered {r.status_code}: {r.text[:300]}")
        return r.json()


def _replay_range(db: Database, feed: _Feed, after: int, until: int | None, count) -> int:
    """Apply the feed's events after position ``after`` up to ``until`` (to its end if None), page by
    page; the next page is fetched while one is applied; ``count(n)`` after each page. Returns how
    many were new."""
    from concurrent.futures import ThreadPoolExecutor
    applied = 0
    with ThreadPoolExecutor(max_workers=1) as fetcher:
        pending = fetcher.submit(feed.page, after)
        while True:
            page = pending.result()
            items = [i for i in page["items"] if until is None or i["position"] <= until]
            if not items:
                break
            if len(items) == len(page["items"]) and (until is None or page["next_after"] < until):
                pending = fetcher.submit(feed.page, page["next_after"])
            else:
                pending = None
            with db.session() as session:
                applied += apply_many(session, [item["event"] for item in items], recompose_people=False)
            count(len(items))
            if pending is None:
                break
    return applied


# -- the worker processes of a parallel rebuild (PostgreSQL) ----------------------------------------
_worker: dict = {}


def _start_worker(url: str, schema: str | None, done) -> None:
    _worker.update(db=Database(url, schema), done=done)


def _worker_replay(settings: Settings, service: str, page_size: int, after: int, until: int | None) -> int:
    done = _worker["done"]

    def count(n: int) -> None:
        with done.get_lock():
            done.value += n
    return _replay_range(_worker["db"], _Feed(settings, service, page_size), after, until, count)


def _worker_recompose(people: list[str]) -> int:
    with _worker["db"].session() as session:
        recompose_many(session, people)
    done = _worker["done"]
    with done.get_lock():
        done.value += len(people)
    return len(people)


class _Workers:
    """The processes of a parallel rebuild, started once for the whole rebuild, and a shared
    counter of what they have done (for the progress bar)."""

    def __init__(self, db: Database, workers: int):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor
        context = multiprocessing.get_context("spawn")  # no inherited connections or threads
        self.count = workers
        self.done = context.Value("q", 0)
        self.pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker,
                                        initargs=(db.url, db.schema, self.done))

    def run(self, calls: list[tuple], show) -> int:
        """Run every (function, *args) call, showing progress; the first failure stops the rebuild."""
        from concurrent.futures import FIRST_EXCEPTION, wait
        with self.done.get_lock():
            self.done.value = 0
        total, pending = 0, {self.pool.submit(*call) for call in calls}
        while pending:
            finished, pending = wait(pending, timeout=1.0, return_when=FIRST_EXCEPTION)
            for future in finished:
                total += future.result()  # raises the worker's error
            show(self.done.value)
        return total

    def close(self) -> None:
        self.pool.shutdown(cancel_futures=True)


def replay(db: Database, settings: Settings, service: str, page_size: int, progress: Progress,
           workers: _Workers | None = None) -> int:
    """Apply a service's whole feed. With workers the feed is cut into ranges of positions, each
    replayed by a process of its own: the inbox and the versions make the order of arrival
    irrelevant, as for the consumer."""
    feed = _Feed(settings, service, page_size)
    last = feed.page(0).get("last_position") or 0
    if workers is None or last == 0:
        seen = [0]

        def count(n: int) -> None:
            seen[0] += n
            progress.show(service, seen[0], max(seen[0], last))
        applied = _replay_range(db, feed, 0, None, count)
        progress.show(service, seen[0], max(seen[0], last), force=True)
        progress.end()
        return applied
    n = workers.count
    bounds = [last * i // n for i in range(n)] + [None]  # the last range runs to the end
    applied = workers.run([(_worker_replay, settings, service, page_size, bounds[i], bounds[i + 1])
                           for i in range(n)], lambda done: progress.show(service, done, max(done, last)))
    seen = workers.done.value
    progress.show(service, seen, max(seen, last), force=True)
    progress.end()
    return applied


def recompose_all(db: Database, progress: Progress, batch: int = 500, workers: _Workers | None = None) -> int:
    if db.is_postgres:  # the replay refilled these tables: without fresh statistics the planner
        with db.session() as session:  # scans them whole for every batch instead of using the indexes
            session.execute(text("ANALYZE aggregates, change_log"))
    with db.session() as session:
        people = session.execute(select(aggregates.c.nhs_number).distinct()).scalars().all()
    batches = [people[start:start + batch] for start in range(0, len(people), batch)]
    if workers is None:
        for i, chunk in enumerate(batches):
            with db.session() as session:
                recompose_many(session, chunk)
            progress.show("portfolios", min((i + 1) * batch, len(people)), len(people))
    else:
        workers.run([(_worker_recompose, chunk) for chunk in batches],
                    lambda done: progress.show("portfolios", done, len(people)))
    progress.show("portfolios", len(people), len(people), force=True)
    progress.end()
    return len(people)


def rebuild(db: Database, settings: Settings, services=None, page_size: int = 2000,
            stream=sys.stderr, workers: int = 1) -> dict:
    """Replay ``services`` (default: every one); ``workers`` processes replay and recompose in
    parallel (PostgreSQL; SQLite takes one writer)."""
    services = services or service_names()
    progress = Progress(stream)
    started = time.monotonic()
    wipe(db)
    pool = _Workers(db, workers) if workers > 1 and db.is_postgres else None
    try:
        counts = {service: replay(db, settings, service, page_size, progress, pool) for service in services}
        people = recompose_all(db, progress, workers=pool)
    finally:
        if pool is not None:
            pool.close()
    seconds = time.monotonic() - started
    return {"events": counts, "people": people, "seconds": round(seconds, 2)}
