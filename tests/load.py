"""A load generator for the fault tests: writes plans and retries like a careful client would."""
from __future__ import annotations

import threading
import time
import uuid
from collections import Counter

import requests

from coproduction.auth import ROLES, Caller, issue_service_token
from nhs import numbered


def person(n: int) -> str:
    return numbered(n, series=600000000)


class Writer:
    """Creates ``total`` plans from ``threads`` threads. Every create carries an Idempotency-Key and
    is retried with the same key after a 503, a 5xx or a broken connection, so a plan is never
    lost by the client and never created twice. ``direct=True`` writes to the plans service itself
    (as an internal system would while the gateway is down)."""

    def __init__(self, platform, total: int, threads: int = 4, direct: bool = False, offset: int = 0):
        self.platform = platform
        self.total = total
        self.threads = threads
        self.direct = direct
        self.offset = offset
        self.statuses: Counter = Counter()
        self.retry_after_missing = 0
        self.created: list[str] = []
        self.lock = threading.Lock()
        self.next = 0
        self.stop_event = threading.Event()
        self.workers: list[threading.Thread] = []

    def _url_and_headers(self):
        if self.direct:
            caller = Caller("load", "load", "LOAD", "gp", frozenset(ROLES["gp"]))
            token = issue_service_token(caller, "plans", self.platform.env["SERVICE_TOKEN_SECRET"])
            return f"http://127.0.0.1:{self.platform.ports['plans']}/v1/plans", {"Authorization": f"Bearer {token}"}
        return f"{self.platform.url}/v1/plans", {"Authorization": f"Bearer {self.platform.tokens['gp']}"}

    def _take(self) -> int | None:
        with self.lock:
            if self.next >= self.total or self.stop_event.is_set():
                return None
            self.next += 1
            return self.next - 1

    def _work(self):
        http = requests.Session()
        while (i := self._take()) is not None:
            key = str(uuid.uuid4())
            body = {"nhs_number": person(self.offset + i),
                    "priorities": [{"text": f"Priority {self.offset + i}", "category": "other"}]}
            delay = 0.05
            while not self.stop_event.is_set():
                url, headers = self._url_and_headers()
                headers["Idempotency-Key"] = key
                try:
                    r = http.post(url, json=body, headers=headers, timeout=15)
                    status = r.status_code
                except requests.RequestException:
                    status = "connection error"
                with self.lock:
                    self.statuses[status] += 1
                    if status == 503 and "Retry-After" not in r.headers:
                        self.retry_after_missing += 1
                if status == 201:
                    with self.lock:
                        self.created.append(r.json()["id"])
                    break
                if status == 429 or status == "connection error" or (isinstance(status, int) and status >= 500):
                    time.sleep(delay)
                    delay = min(delay * 2, 1.0)
                    continue
                raise AssertionError(f"unexpected {status}: {r.text[:300]}")

    def start(self) -> "Writer":
        for _ in range(self.threads):
            t = threading.Thread(target=self._work, daemon=True)
            t.start()
            self.workers.append(t)
        return self

    def join(self, timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        for t in self.workers:
            t.join(max(0.1, deadline - time.monotonic()))
        assert not any(t.is_alive() for t in self.workers), "the writers did not finish"

    @property
    def done(self) -> int:
        return len(self.created)
