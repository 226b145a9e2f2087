"""Rate limits: per authenticated client, per source address without one, across every worker and
replica (429 with Retry-After).

Counts live in one shared store: Redis (``RATE_LIMIT_STORAGE_URI=redis://...``, what compose runs)
or, for the embedded default, the process's memory; the embedded gateway then serves from one
process (coproduction/web.py), so the count is still the whole gateway's. With Redis the counting is
off the request's path: a process counts locally and adds its counts to Redis every
``RATE_LIMIT_FLUSH_MS`` (50) in a background thread, and refuses once the window's shared count plus
its own unsent count reaches the limit; a client can exceed a limit by at most what other processes
admitted in that interval. ``RATE_LIMIT_FLUSH_MS=0`` counts each request in Redis before answering
it instead: exact across processes, for one Redis round trip per request.
If Redis cannot be reached, requests are let through and the fault is logged: the limit protects the
platform from floods, it is not what keeps data safe.
"""
from __future__ import annotations

import logging
import math
import re
import threading
import time
from dataclasses import dataclass

from flask import g, request

from coproduction.http import Problem

log = logging.getLogger(__name__)

UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
RATE = re.compile(r"^\s*(\d+)\s*(?:per|/)\s*(second|minute|hour|day)s?\s*$")


@dataclass(frozen=True)
class Rate:
    limit: int
    seconds: int

    @classmethod
    def parse(cls, text: str) -> "Rate":
        match = RATE.match(text)
        if not match:
            raise ValueError(f"a rate is like '600 per minute', not {text!r}")
        return cls(int(match.group(1)), UNITS[match.group(2)])


class MemoryStore:
    """Counts in this process (the embedded default, and tests)."""

    def __init__(self):
        self.counts: dict[tuple, int] = {}
        self._pruned_at = 0.0

    def add(self, counts: dict[tuple, int]) -> dict[tuple, int]:
        at = time.time()
        if at - self._pruned_at > 1:  # forget finished windows, at most once a second
            self._pruned_at = at
            self.counts = {k: v for k, v in self.counts.items() if k[2] >= int(at // k[1]) - 1}
        for key, n in counts.items():
            self.counts[key] = self.counts.get(key, 0) + n
        return {key: self.counts[key] for key in counts}


class RedisStore:
    def __init__(self, url: str):
        import redis
        self.redis = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)

    def add(self, counts: dict[tuple, int]) -> dict[tuple, int]:
        pipe = self.redis.pipeline(transaction=False)
        for (key, seconds, window), n in counts.items():
            name = f"coproduction:rate:{key}:{seconds}:{window}"
            pipe.incrby(name, n)
            pipe.expire(name, seconds * 2)
        totals = pipe.execute()[::2]
        return dict(zip(counts, totals))


class Limiter:
    def __init__(self, rate: Rate, anonymous: Rate, store, flush_seconds: float = 0.05):
        self.rate, self.anonymous, self.store = rate, anonymous, store
        self.shared = isinstance(store, RedisStore)
        self.flush_seconds = flush_seconds
        self._lock = threading.Lock()
        self._known: dict[tuple, int] = {}   # (key, window length, window number) -> count
        self._unsent: dict[tuple, int] = {}
        self._flusher: threading.Thread | None = None

    def hit(self, key: str, rate: Rate) -> tuple[bool, int, int]:
        """Count one request; (allowed, remaining, seconds until the window ends)."""
        now = time.time()
        window = int(now // rate.seconds)
        reset = max(1, math.ceil((window + 1) * rate.seconds - now))
        slot = (key, rate.seconds, window)
        with self._lock:
            if not self.shared:  # the store is this process's memory: count in it directly
                used = self.store.counts.get(slot, 0)
                if used >= rate.limit:
                    return False, 0, reset
                return True, rate.limit - self.store.add({slot: 1})[slot], reset
            used = self._known.get(slot, 0) + self._unsent.get(slot, 0)
            if used >= rate.limit:
                return False, 0, reset
            if self.flush_seconds <= 0:
                return self._count_now(slot, rate.limit, reset)
            self._unsent[slot] = self._unsent.get(slot, 0) + 1
        self._start_flushing()
        return True, max(0, rate.limit - used - 1), reset

    def _count_now(self, slot: tuple, limit: int, reset: int) -> tuple[bool, int, int]:
        """Count in the shared store before answering (called holding the lock)."""
        try:
            used = self.store.add({slot: 1})[slot]
        except Exception as exc:  # the store is down: let the request through, say so
            log.warning("rate-limit store unavailable (%s)", exc)
            return True, 0, reset
        self._known[slot] = used
        return used <= limit, max(0, limit - used), reset

    def _start_flushing(self) -> None:
        if self._flusher is None or not self._flusher.is_alive():
            with self._lock:
                if self._flusher is None or not self._flusher.is_alive():  # once per (forked) process
                    self._flusher = threading.Thread(target=self._flush_forever, name="rate-limit", daemon=True)
                    self._flusher.start()

    def _flush_forever(self) -> None:
        while True:
            time.sleep(self.flush_seconds)
            self.flush()

    def flush(self) -> None:
        with self._lock:
            unsent, self._unsent = self._unsent, {}
        if not unsent:
            return
        try:
            totals = self.store.add(unsent)
        except Exception as exc:  # the store is down: let requests through, say so
            log.warning("rate-limit store unavailable (%s); %d counts dropped", exc, sum(unsent.values()))
            return
        at = time.time()
        with self._lock:  # keep the current and the last window of each length
            self._known = {k: v for k, v in self._known.items() if k[2] >= int(at // k[1]) - 1}
            self._known.update(totals)


def init_limits(app, settings) -> Limiter:
    uri = settings.rate_limit_storage_uri
    store = RedisStore(uri) if uri.startswith(("redis://", "rediss://", "unix://")) else MemoryStore()
    limiter = Limiter(Rate.parse(settings.rate_limit), Rate.parse(settings.rate_limit_anonymous), store,
                      settings.rate_limit_flush_ms / 1000)
    app.extensions["rate_limiter"] = limiter
    app.after_request(_headers)
    return limiter


def check(caller) -> None:
    """Count this request against its client's limit (its address's, unauthenticated); 429 over it."""
    from flask import current_app
    limiter: Limiter = current_app.extensions["rate_limiter"]
    if caller is not None:
        key, rate = f"client:{caller.client_id}", limiter.rate
    else:
        key, rate = f"addr:{request.remote_addr or 'unknown'}", limiter.anonymous
    allowed, remaining, reset = limiter.hit(key, rate)
    g.rate_limit = (rate.limit, remaining, reset)
    if not allowed:
        raise Problem(429, "Too Many Requests", f"More than {rate.limit} requests in {rate.seconds} s; "
                      f"retry in {reset} s.", headers={"Retry-After": str(reset)})


def _headers(response):
    if "rate_limit" in g:
        limit, remaining, reset = g.rate_limit
        response.headers["X-RateLimit-Limit"] = str(limit)
        response.headers["X-RateLimit-Remaining"] = str(remaining)
        response.headers["X-RateLimit-Reset"] = str(int(time.time()) + reset)
    return response
