"""``coproduction seed --people N``: generated people, written through the services' own code.

Two ways in, both the services' own code paths, never a hand-made row the services would not write:

- **detailed** people (the first ``--detailed`` of them, 1,000 by default) get a whole portfolio
  through each service's own HTTP handlers, called in this process with a signed service token:
  a plan created and agreed, a personal health budget created, planned and agreed, a shared
  decision opened and recorded, and a place on a self-management course with a session attended.
  Every rule, every version and every event is exactly what a client's calls would produce.
- **bulk** people (the rest) each get a draft care and support plan, written in large
  transactions with the plans service's own model, its own representation (``plan_json``), its
  own version snapshot and its own event data, validated by ``make_event`` against the producer's
  schema and added to the outbox with :func:`coproduction.outbox.record_many`. This is what makes
  a million events in minutes.

NHS numbers come from a range kept for generated people (first nine digits from 900000000 up,
with a valid check digit); ``--start K`` skips the first K so a second run adds new people.
``--published`` marks the bulk events as already sent: for a load that the gateway reads with
``coproduction rebuild`` (from the services' feeds) instead of over the bus.
"""
from __future__ import annotations

import time
import uuid
from datetime import date, timedelta
from typing import Callable, Iterator

from coproduction.auth import SCOPES, Caller, issue_service_token
from coproduction.config import Settings
from coproduction.service import service_names

FIRST = 900_000_000
SEED_CALLER = Caller("seed", "coproduction seed", "SEED01", "admin", frozenset(SCOPES), "data generation")


def nhs_numbers(count: int, start: int = 0) -> list[str]:
    """The ``start``-th to ``start + count``-th generated NHS numbers (all valid, all distinct)."""
    out: list[str] = []
    position = 0
    tens = FIRST // 10
    while len(out) < count:
        head = str(tens)  # the first eight digits; the ninth runs 0..9 with weight 2
        total = sum(int(d) * w for d, w in zip(head, range(10, 2, -1)))
        tens += 1
        for ninth in range(10):
            check = 11 - (total + 2 * ninth) % 11
            if check == 10:  # no valid number has these nine digits
                continue
            if position >= start:
                out.append(f"{head}{ninth}{0 if check == 11 else check}")
                if len(out) == count:
                    break
            position += 1
    return out


def _chunks(items: list, size: int) -> Iterator[list]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


# -- detailed people: each service's own HTTP handlers ------------------------------------------
class _Service:
    """One domain service's Flask app in this process, called like the gateway calls it."""

    def __init__(self, name: str):
        from coproduction.service import load
        from coproduction.web import migrate
        migrate(name)
        self.name = name
        self.settings = Settings.from_env(name)
        self.app = load(name).create_app(self.settings)
        self.client = self.app.test_client()
        self._token_at = 0.0
        self._token = ""

    def _auth(self) -> dict:
        if time.monotonic() - self._token_at > 30:  # tokens live 60 s
            self._token = issue_service_token(SEED_CALLER, self.name, self.settings.service_token_secret)
            self._token_at = time.monotonic()
        return {"Authorization": f"Bearer {self._token}"}

    def call(self, method: str, path: str, body: dict, if_match: int | None = None) -> dict:
        headers = self._auth()
        if if_match is not None:
            headers["If-Match"] = f'"{if_match}"'
        resp = self.client.open(path, method=method, json=body, headers=headers) if body is not None \
            else self.client.open(path, method=method, headers=headers)
        if resp.status_code >= 300:
            raise RuntimeError(f"{self.name}: {method} {path} answered {resp.status_code}: "
                               f"{resp.get_data(as_text=True)[:500]}")
        return resp.get_json()

    def dispose(self) -> None:
        from coproduction.http import ctx
        with self.app.app_context():
            ctx().db.dispose()


def _priorities(i: int) -> list[dict]:
    return [
        {"text": "Walk my grandson to school", "category": "physical_activity", "expressed_by": "person",
         "rank": 1, "status": "active"},
        {"text": "Keep driving for work", "category": "work_and_money", "expressed_by": "person",
         "rank": 2, "status": "active"},
        {"text": f"See my friends at the club on {('Mondays', 'Wednesdays', 'Fridays')[i % 3]}",
         "category": "social_connection", "expressed_by": "person", "rank": 3, "status": "active"},
    ]


def _detailed_person(services: dict[str, _Service], nhs: str, i: int) -> list:
    today = date.today()
    plan = None
    if "plans" in services:
        plans = services["plans"]
        plan = plans.call("POST", "/v1/plans", {
            "nhs_number": nhs, "conditions": ["type 2 diabetes", "low mood"],
            "priorities": _priorities(i),
            "goals": [{"description": "Weight 105 kg",
                       "target": {"measure": "body weight", "value": 105, "unit": "kg",
                                  "due": (today + timedelta(days=300)).isoformat()}}],
            "actions": [{"text": "Walk 15 minutes after lunch", "owner": "person"}],
            "next_review_date": (today + timedelta(days=180)).isoformat()})
        plan = plans.call("POST", f"/v1/plans/{plan['id']}/agree",
                          {"agreed_by": "Dr A Patel", "person_agreed": True}, if_match=plan["version"])
    shared = [dict(p) for p in plan["priorities"][:2]] if plan else _priorities(i)[:2]
    if "budgets" in services and plan is not None:
        budgets = services["budgets"]
        budget = budgets.call("POST", "/v1/budgets", {
            "nhs_number": nhs, "plan_id": plan["id"], "annual_pence": 114000,
            "holdings": [{"type": "direct_payment", "pence": 54000}, {"type": "notional", "pence": 60000}],
            "priorities": shared,
            "line_items": [
                {"description": "Gym membership", "category": "physical_activity", "sector": "private",
                 "pence": 30000, "frequency": "annual"},
                {"description": "Personal assistant, 4 hours a week", "category": "personal_assistant",
                 "sector": "private", "pence": 1500, "frequency": "weekly"}]})
        budget = budgets.call("POST", f"/v1/budgets/{budget['id']}/start-planning", {},
                              if_match=budget["version"])
        budgets.call("POST", f"/v1/budgets/{budget['id']}/agree",
                     {"agreed_by": "J Smith, social worker", "person_agreed": True}, if_match=budget["version"])
    if "decisions" in services:
        decisions = services["decisions"]
        decision = decisions.call("POST", "/v1/decisions", {
            "nhs_number": nhs, "setting": "inpatient", "encounter_id": f"ADM-{i}",
            "question": "How should we manage his blood glucose?", "priorities": shared[1:],
            "options": [
                {"label": "Start insulin", "benefits": ["Better control of blood glucose"],
                 "risks": [{"text": "hypoglycaemia", "natural_frequency": "10 in 100"}],
                 "consequences": ["Injections twice a day"]},
                {"label": "No change until GP review", "is_no_change": True,
                 "benefits": ["Keeps driving without new rules"],
                 "risks": [{"text": "high blood glucose for longer", "natural_frequency": "30 in 100"}]}]})
        decisions.call("POST", f"/v1/decisions/{decision['id']}/record", {
            "chosen_option_id": decision["options"][1]["id"],
            "persons_reason": "Worried about hypos while driving", "clinician": "Dr A Patel"},
            if_match=decision["version"])
    return shared


def _course(groups: _Service, people: list[tuple[str, list]]) -> None:
    """A course for up to ten people: created, each enrolled, started, first session attended."""
    today = date.today()
    course = groups.call("POST", "/v1/courses", {
        "programme": "expert_patients", "title": "Living well with diabetes", "sessions": 6,
        "starts_on": (today - timedelta(days=14)).isoformat(), "capacity": 12,
        "tutors": [{"name": "Sam Lee", "role": "lay_tutor"}]})
    enrolments = [groups.call("POST", f"/v1/courses/{course['id']}/enrolments", {
        "nhs_number": nhs, "referral_source": "care_plan", "priorities": shared[:1]})
        for nhs, shared in people]
    groups.call("POST", f"/v1/courses/{course['id']}/start", {}, if_match=course["version"])
    for enrolment in enrolments:
        current = groups.call("GET", f"/v1/enrolments/{enrolment['id']}", None)
        groups.call("POST", f"/v1/enrolments/{enrolment['id']}/attendance", {"session_no": 1, "attended": True},
                    if_match=current["version"])


def _detailed_part(numbers: list[str], services: list[str], label: str = "") -> int:
    apps = {name: _Service(name) for name in services}
    started = time.monotonic()
    block: list = []
    try:
        for i, nhs in enumerate(numbers):
            block.append((nhs, _detailed_person(apps, nhs, i)))
            if "groups" in apps and (len(block) == 10 or i == len(numbers) - 1):
                _course(apps["groups"], block)
                block = []
            if (i + 1) % 250 == 0:
                print(f"  detailed{label}: {i + 1}/{len(numbers)} people ({time.monotonic() - started:.0f} s)",
                      flush=True)
    finally:
        for service in apps.values():
            service.dispose()
    return len(numbers)


def seed_detailed(numbers: list[str], services: list[str], jobs: int = 1) -> None:
    """The detailed people, in ``jobs`` processes side by side (shares of whole courses of ten)."""
    from coproduction.web import migrate
    for name in services:
        migrate(name)
    if jobs <= 1 or len(numbers) < 20 * jobs:
        _detailed_part(numbers, services)
        return
    share = -(-len(numbers) // jobs // 10) * 10
    _in_processes(_detailed_part, [(numbers[i:i + share], services) for i in range(0, len(numbers), share)])


def _in_processes(function, arguments: list[tuple]) -> None:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    with ProcessPoolExecutor(len(arguments), mp_context=multiprocessing.get_context("spawn")) as pool:
        for future in [pool.submit(function, *args, f" [{n + 1}/{len(arguments)}]")
                       for n, args in enumerate(arguments)]:
            future.result()


# -- bulk people: the plans service's model, representation and event, many per transaction -----
def _bulk_part(numbers: list[str], published: bool, batch: int, label: str = "") -> int:
    """Write one share of the bulk people; the next batch is built while the last one is written."""
    from concurrent.futures import ThreadPoolExecutor

    from flask import Flask, g
    from sqlalchemy import insert

    from services.plans import handlers as plans_handlers, schemas as plans_schemas
    from services.plans import events as _plan_events  # noqa: F401  (registers the schemas make_event checks)
    from services.plans import models as plans_models

    from coproduction.events import make_event, now
    from coproduction.outbox import record_many
    from coproduction.service import load

    db = load("plans").database(Settings.from_env("plans"))
    context = Flask("seed").test_request_context()  # the service's helpers read the caller from g
    context.push()
    g.caller = SEED_CALLER
    changed_by = plans_handlers.changed_by()

    def write(plans: list, versions: list, events: list) -> None:
        with db.session() as session:
            session.execute(insert(plans_models.Plan), plans)
            session.execute(insert(plans_models.PlanVersion), versions)
            record_many(session, plans_models.outbox, events, sent_at=now() if published else None)

    writer = ThreadPoolExecutor(max_workers=1)
    pending = None
    try:
        at = now()
        template = plans_schemas.PlanCreateSchema().load({
            "nhs_number": numbers[0] if numbers else "9434765919",
            "conditions": ["type 2 diabetes"],
            "priorities": [{"text": "Walk my grandson to school", "category": "physical_activity",
                            "expressed_by": "person", "rank": 1, "status": "active"}],
            "next_review_date": (at.date() + timedelta(days=180)).isoformat()})
        empty = {"conditions": [], "priorities": [], "goals": [], "actions": [], "results": [],
                 "next_review_date": None, "results_shared_at": None, "care_coordinator": None,
                 "status_reason": None, "closed_at": None}
        content0 = plans_handlers.plan_content(template, empty, at)
        done, started = 0, time.monotonic()
        for chunk in _chunks(numbers, batch):
            plans, versions, events = [], [], []
            for nhs in chunk:
                # the template's lists are shared (they are only read); each person's priorities are new
                content = dict(content0, priorities=[dict(p, id=str(uuid.uuid4()))
                                                     for p in content0["priorities"]])
                plan = plans_models.Plan(
                    id=str(uuid.uuid4()), nhs_number=nhs, status="draft", version=1, content=content,
                    created_by=SEED_CALLER.client_id, updated_by=SEED_CALLER.client_id,
                    created_at=at, updated_at=at)
                body = plans_handlers.plan_json(plan)
                plans.append({c: getattr(plan, c) for c in (
                    "id", "nhs_number", "status", "version", "content", "created_by", "updated_by",
                    "created_at", "updated_at")})
                versions.append({"plan_id": plan.id, "version": 1, "event_type": "plan.created",
                                 "status": "draft", "snapshot": body, "changes": [], "reason": None,
                                 "changed_by": changed_by, "created_at": at})
                events.append(make_event(source="plans", type="plan.created", subject=nhs,
                                         aggregate_id=plan.id, aggregate_version=1,
                                         data=plans_handlers.event_data(plan, None, [], body)))
            if pending is not None:
                pending.result()
            pending = writer.submit(write, plans, versions, events)
            done += len(chunk)
            if done % 100_000 < batch:
                rate = done / max(time.monotonic() - started, 1e-9)
                print(f"  bulk{label}: {done}/{len(numbers)} people ({rate:,.0f} a second)", flush=True)
        if pending is not None:
            pending.result()
    finally:
        writer.shutdown(wait=True)
        context.pop()
        db.dispose()
    return len(numbers)


def seed_bulk_plans(numbers: list[str], *, published: bool, batch: int, jobs: int = 1) -> None:
    """The bulk people, in ``jobs`` processes side by side (each its own transactions)."""
    from coproduction.web import migrate
    migrate("plans")
    if jobs <= 1 or len(numbers) < 2 * batch:
        _bulk_part(numbers, published, batch)
        return
    share = -(-len(numbers) // jobs)
    _in_processes(_bulk_part, [(numbers[i:i + share], published, batch) for i in range(0, len(numbers), share)])


def seed(people: int, *, detailed: int | None = None, start: int = 0, published: bool = False,
         batch: int = 2000, jobs: int = 1, services: list[str] | None = None,
         progress: Callable[[str], None] = print) -> dict:
    """Seed ``people`` people; return what was written and how long it took."""
    services = [s for s in services or service_names() if s in service_names()]
    if "plans" not in services:
        raise SystemExit("seed needs the plans service")
    detailed = min(people, 1000 if detailed is None else detailed)
    numbers = nhs_numbers(people, start)
    started = time.monotonic()
    if detailed:
        progress(f"seeding {detailed} detailed people through {', '.join(services)}")
        seed_detailed(numbers[:detailed], services, jobs)
    t_detailed = time.monotonic() - started
    if people > detailed:
        progress(f"seeding {people - detailed} people in bulk (plans){' as published' if published else ''}")
        seed_bulk_plans(numbers[detailed:], published=published, batch=batch, jobs=jobs)
    elapsed = time.monotonic() - started
    return {"people": people, "detailed": detailed, "bulk": people - detailed, "first": numbers[0] if numbers else None,
            "last": numbers[-1] if numbers else None, "detailed_seconds": round(t_detailed, 2),
            "seconds": round(elapsed, 2), "services": services}
