#!/usr/bin/env python3
"""An example GP system that syncs care and support plans with coproduction, both ways.

Pull: read the gateway's change feed (``GET /v1/changes?after=<cursor>&types=plan.*``) from the
cursor saved last time, keep each plan's newest state in a local store, and save the cursor
after every page, so a run that stops half way resumes where it stopped and no change is missed
or applied twice (an event older than what is held is skipped by its ``aggregateversion``).

Push: change a plan here and send it with ``If-Match: "<the version this GP system last saw>"``.
If someone else changed the plan meanwhile the gateway answers 412; the client reads the plan
again, applies its change on top of the newer version and retries, so nobody's change is lost.

    export COPRODUCTION_TOKEN=cpt_...            # a client with the gp role
    python examples/gp_sync.py --url http://127.0.0.1:8000 --state var/gp-sync
    python examples/gp_sync.py --url ... --state ... \\
        --revise <plan id> --set next_review_date=2027-06-01 --set 'conditions=["type 2 diabetes"]' \\
        --reason "Reviewed at the practice"

Output: one JSON object per line (``pulled``, ``pushed``, ``conflict``, then ``synced`` with the count), for a person
or a script to read. Only ``requests`` is needed.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import requests


class Store:
    """The GP system's own copy: each plan's newest state, and the feed cursor, in a directory."""

    def __init__(self, directory: Path):
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.plans_file = self.dir / "plans.json"
        self.cursor_file = self.dir / "cursor"
        self.plans: dict[str, dict] = json.loads(self.plans_file.read_text()) if self.plans_file.exists() else {}

    @property
    def cursor(self) -> str | None:
        return self.cursor_file.read_text().strip() or None if self.cursor_file.exists() else None

    def _write(self, path: Path, text: str) -> None:
        """Atomically: a crash leaves the old file or the new one, never half of one."""
        fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=path.name + ".")
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def save(self, cursor: str | None = None) -> None:
        # the plans first, then the cursor: after a crash between the two a page is read again,
        # and applying it again changes nothing (versions)
        self._write(self.plans_file, json.dumps(self.plans, indent=1, sort_keys=True))
        if cursor is not None:
            self._write(self.cursor_file, cursor)

    def apply(self, plan_id: str, version: int, state: dict) -> bool:
        held = self.plans.get(plan_id)
        if held is not None and held["version"] >= version:
            return False
        self.plans[plan_id] = dict(state, id=plan_id, version=version)
        return True


class Client:
    def __init__(self, url: str, token: str):
        self.url = url.rstrip("/")
        self.http = requests.Session()
        self.http.headers.update({"Authorization": f"Bearer {token}", "X-Purpose": "GP record sync"})

    def call(self, method: str, path: str, **kwargs) -> requests.Response:
        for attempt in range(5):
            r = self.http.request(method, self.url + path, timeout=30, **kwargs)
            if r.status_code in (429, 503) and attempt < 4:
                time.sleep(min(float(r.headers.get("Retry-After", "1")), 10))
                continue
            return r
        return r


def emit(**fields) -> None:
    print(json.dumps(fields, sort_keys=True), flush=True)


def pull(client: Client, store: Store, types: str, limit: int) -> int:
    """Read the feed from the saved cursor to its end; return how many changes were read."""
    count = 0
    while True:
        params = {"types": types, "limit": limit}
        if store.cursor:
            params["after"] = store.cursor
        r = client.call("GET", "/v1/changes", params=params)
        if r.status_code != 200:
            raise SystemExit(f"the change feed answered {r.status_code}: {r.text}")
        page = r.json()
        for event in page["items"]:
            data = event["data"]
            state = {k: v for k, v in data.items() if k != "plan_id"}
            state["nhs_number"] = event["subject"]
            applied = store.apply(event["aggregateid"], event["aggregateversion"], state)
            emit(pulled=event["type"], id=event["id"], plan=event["aggregateid"],
                 version=event["aggregateversion"], applied=applied)
            count += 1
        store.save(page["next_cursor"])
        if not page["has_more"]:
            return count


def push(client: Client, store: Store, plan_id: str, changes: dict, reason: str | None,
         attempts: int = 5) -> dict:
    """Send a local change with If-Match; on 412 read the plan again and re-apply the change on top."""
    held = store.plans.get(plan_id)
    if held is None:  # never pulled: start from what the platform has now
        held = refresh(client, store, plan_id)
    body = dict(changes, **({"reason": reason} if reason else {}))
    for attempt in range(attempts):
        r = client.call("PATCH", f"/v1/plans/{plan_id}", json=body,
                        headers={"If-Match": f'"{held["version"]}"'})
        if r.status_code == 200:
            plan = r.json()
            store.apply(plan_id, plan["version"], {k: v for k, v in plan.items() if k != "id"})
            store.save()
            emit(pushed=plan_id, version=plan["version"], retries=attempt)
            return plan
        if r.status_code != 412:
            raise SystemExit(f"the change was refused ({r.status_code}): {r.text}")
        emit(conflict=plan_id, sent_if_match=held["version"], now=r.headers.get("ETag"))
        held = refresh(client, store, plan_id)
    raise SystemExit(f"gave up after {attempts} conflicting attempts on plan {plan_id}")


def refresh(client: Client, store: Store, plan_id: str) -> dict:
    r = client.call("GET", f"/v1/plans/{plan_id}")
    if r.status_code != 200:
        raise SystemExit(f"could not read plan {plan_id} ({r.status_code}): {r.text}")
    plan = r.json()
    store.apply(plan_id, plan["version"], {k: v for k, v in plan.items() if k != "id"})
    store.save()
    return store.plans[plan_id]


def parse_set(pairs: list[str]) -> dict:
    out = {}
    for pair in pairs:
        field, sep, value = pair.partition("=")
        if not sep or not field:
            raise SystemExit(f"--set wants FIELD=VALUE, got {pair!r}")
        try:
            out[field] = json.loads(value)
        except ValueError:
            out[field] = value
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=os.environ.get("COPRODUCTION_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--state", required=True, type=Path, help="directory for the cursor and the local copy")
    parser.add_argument("--types", default="plan.*")
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--no-pull", action="store_true", help="push without pulling first")
    parser.add_argument("--revise", metavar="PLAN_ID", help="push a local change to this plan")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="a field of the change (VALUE is JSON, or else a string)")
    parser.add_argument("--reason", help="why the plan was changed")
    args = parser.parse_args(argv)
    token = os.environ.get("COPRODUCTION_TOKEN")
    if not token:
        parser.error("set COPRODUCTION_TOKEN to the client's token (kept out of the command line)")
    client, store = Client(args.url, token), Store(args.state)
    pulled = 0 if args.no_pull else pull(client, store, args.types, args.limit)
    if args.revise:
        changes = parse_set(args.set)
        if not changes:
            parser.error("--revise needs at least one --set FIELD=VALUE")
        push(client, store, args.revise, changes, args.reason)
    emit(synced=True, changes=pulled, cursor=store.cursor, plans=len(store.plans))
    return 0


if __name__ == "__main__":
    sys.exit(main())
