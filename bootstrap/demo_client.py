"""The demo's client of the gateway: calls with a role's token, errors that say what to do, and
waiting for the projection to show what the story just did."""
from __future__ import annotations

import json
import time
from typing import Callable

import requests

from coproduction.service import services

#: first path segment under /v1 -> the service that answers it (as the gateway routes it)
SERVICE_OF = {route: spec.name for spec in services() for route in spec.routes}


class DemoError(Exception):
    """The demo cannot go on; the message says what failed, where, and what to do."""


class Gateway:
    def __init__(self, url: str, tokens: dict[str, str], nhs: str, timeout: float, say: Callable[[str], None]):
        self.url = url.rstrip("/")
        self.tokens = tokens
        self.nhs = nhs
        self.timeout = timeout
        self.say = say
        self.http = requests.Session()

    def done(self, text: str, ref: str = "") -> None:
        self.say(f"  - {text:<72} {ref}".rstrip())

    def key(self, name: str) -> str:
        return f"demo:{self.nhs}:{name}"

    def call(self, role: str, method: str, path: str, step: str, *, json_body=None, etag: str | None = None,
             key: str | None = None, ok=(200, 201), params=None) -> tuple[dict, str | None]:
        headers = {"Authorization": f"Bearer {self.tokens[role]}", "X-Purpose": "coproduction demo"}
        if etag:
            headers["If-Match"] = etag
        if key:
            headers["Idempotency-Key"] = self.key(key)
        try:
            r = self.http.request(method, self.url + path, json=json_body, headers=headers, params=params,
                                  timeout=30)
        except requests.RequestException as exc:
            raise DemoError(f"{step}: cannot reach the gateway at {self.url} ({type(exc).__name__}). "
                            "Start the platform first: `make run` (or `coproduction run`).") from None
        if r.status_code in ok:
            return (r.json() if r.content else {}), r.headers.get("ETag")
        raise DemoError(self._explain(r, role, method, path, step))

    def _explain(self, r: requests.Response, role: str, method: str, path: str, step: str) -> str:
        try:
            problem = r.json()
        except ValueError:
            problem = {"title": r.reason, "detail": r.text[:300]}
        detail = problem.get("detail") or problem.get("title") or ""
        segment = path.split("/")[2] if path.startswith("/v1/") else ""
        service = SERVICE_OF.get(segment)
        if r.status_code == 503 and service:
            return (f"{step}: the {service} service is not up or not ready (503: {detail}). "
                    f"Start it (`make run` starts every service, or `coproduction serve {service}` and "
                    f"`coproduction relay {service}`) and run the demo again; it carries on where it stopped.")
        if r.status_code == 401:
            return (f"{step}: the gateway refused the {role} token ({detail}). The tokens in "
                    "var/dev-clients.json belong to the database `make run` created them in; run the demo "
                    "with the same settings, or pass --token-file with valid tokens.")
        if r.status_code == 403:
            return f"{step}: the {role} client may not do this ({detail})."
        errors = problem.get("errors")
        more = f"; fields: {json.dumps(errors, sort_keys=True)}" if errors else ""
        return f"{step}: {method} {path} answered {r.status_code} {problem.get('title', '')}: {detail}{more}"

    def portfolio(self, role: str = "gp") -> dict | None:
        r = self.http.get(f"{self.url}/v1/people/{self.nhs}/portfolio", timeout=30,
                          headers={"Authorization": f"Bearer {self.tokens[role]}", "X-Purpose": "coproduction demo"})
        if r.status_code == 404:
            return None
        if r.status_code != 200:
            raise DemoError(f"reading the portfolio: {r.status_code} {r.text[:300]}")
        return r.json()

    def wait_portfolio(self, step: str, what: str, predicate: Callable[[dict], bool]) -> dict:
        """Wait until the gateway's projection shows something (events travel through the bus); read
        by the GP practice, which holds his plan (its care relationship with him)."""
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                doc = self.portfolio()
            except requests.RequestException as exc:
                raise DemoError(f"{step}: cannot reach the gateway at {self.url} ({type(exc).__name__}).") from None
            if doc is not None and predicate(doc):
                return doc
            if time.monotonic() > deadline:
                raise DemoError(f"{step}: after {self.timeout:.0f} s the portfolio still does not show {what}. "
                                "Are the service's relay and the gateway consumer (`coproduction consume`) "
                                "running?")
            time.sleep(0.2)


def priority_id(doc: dict, text: str) -> str:
    for p in doc.get("priorities", []) + doc.get("past_priorities", []):
        if p["text"] == text:
            return p["id"]
    raise DemoError(f"the portfolio has no priority {text!r}")
