"""Webhook subscriptions: signed deliveries (checked by the reference `standardwebhooks` verifier),
in order per person, retried through a receiver's outage, 410 / redirects / timeouts, replay, and
callback URLs refused when they point inside the network.

Everything runs over real RabbitMQ and PostgreSQL; the receiver is a real HTTP server on 127.0.0.1
(allowed by ALLOW_LOOPBACK_WEBHOOKS=1, which the harness sets); the dispatcher runs in a thread
with a fast retry schedule.
"""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dataclasses
import uuid

import pytest
from sqlalchemy import delete, select
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from bodies import gym_budget, plan_body, priority
from calls import create_plan, if_match
from gateway import clients
from gateway.webhooks.config import DeliveryConfig
from gateway.webhooks.dispatcher import Dispatcher
from gateway.webhooks.signing import sign
from gateway.models import change_log, sharing
from gateway.webhooks.models import webhook_attempts, webhook_deliveries, webhook_subscriptions
from harness import ThreadServer, free_port, wait_for
from nhs import new_nhs
from oauth_client import bearer

FAST = [0.05, 0.1, 0.2] + [0.3] * 200  # never used up while a test keeps the receiver down


# -- one platform for the module; each test has its own people, subscriptions and dispatcher ----
@pytest.fixture(scope="module")
def shared_platform(make_module_platform):
    return make_module_platform(services=("plans", "budgets")).start()


@pytest.fixture
def platform(shared_platform):
    yield shared_platform
    if "gateway-deliver" in shared_platform.threads:
        shared_platform.stop_thread("gateway-deliver")
    db = shared_platform.database("gateway")
    with db.session() as s:
        for table in (webhook_attempts, webhook_deliveries, webhook_subscriptions, sharing):
            s.execute(delete(table))
    db.dispose()


@pytest.fixture
def people(shared_platform):
    """Two people of this test's own, so the shared change log holds nobody else's events for them;
    the subscribing social care organisation has a care relationship with both (its emergency
    access here: what it would hold through their budgets), or nothing would be sent to it."""
    pair = new_nhs(), new_nhs()
    for nhs in pair:
        shared_platform.admit(nhs, "social_care", kind="emergency")
    return pair


# -- a receiver ----------------------------------------------------------------------------------
class Receiver:
    """A tiny threaded HTTP server recording every request; ``behave(request)`` decides the answer:
    an int status, or (status, headers), optionally after ``request['sleep']`` seconds."""

    def __init__(self):
        self.port = free_port()
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.behave = lambda req: 200
        self.server = None
        self.start()

    def url(self, path: str = "/hooks/coproduction") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                req = {"path": self.path, "headers": dict(self.headers.items()), "body": body,
                       "at": time.monotonic()}
                try:
                    req["event"] = json.loads(body)
                except ValueError:
                    req["event"] = None
                answer = receiver.behave(req)
                status, headers = answer if isinstance(answer, tuple) else (answer, {})
                if req.get("sleep"):
                    time.sleep(req["sleep"])
                req["status"] = status
                with receiver.lock:
                    receiver.requests.append(req)
                try:
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:
                    pass

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        self.server.handle_error = lambda *a: None
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        """Down hard: from now on connections are refused."""
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def seen(self, **match) -> list[dict]:
        with self.lock:
            return [r for r in self.requests if all(r.get(k) == v for k, v in match.items())]

    def delivered(self) -> list[dict]:
        with self.lock:
            return [r for r in self.requests if 200 <= r["status"] < 300]


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.stop()


def start_dispatcher(platform, **config) -> Dispatcher:
    config.setdefault("schedule", FAST)
    config.setdefault("poll_interval", 0.02)
    config.setdefault("timeout", 2.0)
    config.setdefault("allow_loopback", True)
    dispatcher = Dispatcher(platform.database("gateway"), DeliveryConfig(**config))
    thread = threading.Thread(target=dispatcher.run, daemon=True)
    thread.start()
    platform.threads["gateway-deliver"] = (dispatcher, thread)
    wait_for(dispatcher.ready.is_set, message="the dispatcher to be ready")
    return dispatcher


# -- helpers -------------------------------------------------------------------------------------
def make_plan(platform, nhs: str, agree: bool = True) -> str:
    body = plan_body(nhs, priority(expressed_by="person", rank=1, status="active"), conditions=["type 2 diabetes"],
                     goals=[], actions=[], next_review_date="2027-03-14")
    return create_plan(platform, body, agreed=agree)["id"]


def subscribe(platform, url: str, types=("plan.*",), role: str = "social_care", **extra) -> dict:
    r = platform.call(role, "POST", "/v1/subscriptions", json={"url": url, "types": list(types), **extra})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["secret"].startswith("whsec_") and body["status"] == "active"
    return body


def deliveries(platform, sub_id: str, role: str = "social_care") -> list[dict]:
    items, cursor = [], None
    while True:
        r = platform.call(role, "GET", f"/v1/subscriptions/{sub_id}/deliveries",
                          params={"limit": 100, **({"cursor": cursor} if cursor else {})})
        assert r.status_code == 200, r.text
        items += r.json()["items"]
        cursor = r.json()["next_cursor"]
        if not cursor:
            return items


def settled(platform, sub_id: str, delivered: int) -> list[dict]:
    """The delivery log once ``delivered`` deliveries are recorded as delivered (the receiver sees a
    request a moment before the dispatcher records its answer)."""
    return wait_for(lambda: (lambda log: log if sum(d["status"] == "delivered" for d in log) == delivered
                             else None)(deliveries(platform, sub_id)),
                    message=f"{delivered} deliveries recorded as delivered")


def subscription(platform, sub_id: str, role: str = "social_care") -> dict:
    r = platform.call(role, "GET", f"/v1/subscriptions/{sub_id}")
    assert r.status_code == 200, r.text
    return r.json()


def change_log_ids(platform, subject: str | None = None) -> list[str]:
    db = platform.database("gateway")
    try:
        with db.session() as s:
            q = select(change_log.c.event_id).order_by(change_log.c.position)
            if subject:
                q = q.where(change_log.c.subject == subject)
            return list(s.execute(q).scalars())
    finally:
        db.dispose()


def assert_in_order_per_person(receiver: Receiver, platform, people) -> None:
    """Each person's events arrive in change-log order, and no event is sent before every earlier
    one for that person was accepted."""
    for nhs in people:
        expected = change_log_ids(platform, nhs)
        requests = [r for r in receiver.requests if r["event"] and r["event"]["subject"] == nhs]
        accepted = [r["event"]["id"] for r in requests if 200 <= r["status"] < 300]
        assert accepted == expected, f"{nhs}: accepted in another order than the change log"
        done: set[str] = set()
        for r in requests:
            index = expected.index(r["event"]["id"])
            assert set(expected[:index]) <= done, f"{nhs}: {r['event']['type']} sent before an earlier event"
            if 200 <= r["status"] < 300:
                done.add(r["event"]["id"])


# -- the tests -----------------------------------------------------------------------------------
def test_events_arrive_as_signed_webhooks_that_the_reference_verifier_accepts(platform, receiver, people):
    A, B = people
    start_dispatcher(platform)
    sub = subscribe(platform, receiver.url(), ["plan.*"])
    make_plan(platform, A)
    wait_for(lambda: len(receiver.delivered()) == 2, message="two webhooks")

    verifier = Webhook(sub["secret"])
    for req in receiver.requests:
        event = verifier.verify(req["body"], req["headers"])  # raises if the signature is wrong
        assert req["headers"]["Content-Type"] == "application/json"
        assert req["headers"]["webhook-signature"].startswith("v1,")
        assert event["specversion"] == "1.0" and event["subject"] == A
        assert event["source"] == "/services/plans"
    assert [r["event"]["type"] for r in receiver.requests] == ["plan.created", "plan.agreed"]
    assert [r["event"]["id"] for r in receiver.requests] == change_log_ids(platform, A)

    req = receiver.requests[0]
    tampered = req["body"].replace(b'"plan.created"', b'"plan.closed"')
    with pytest.raises(WebhookVerificationError):
        verifier.verify(tampered, req["headers"])
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "c2VjcmV0LWJ1dC1ub3QtdGhlLW9uZS10aGF0LXNpZ25lZA==").verify(req["body"], req["headers"])
    stale = int(time.time()) - 600  # correctly signed, ten minutes old
    old_headers = dict(req["headers"], **{"webhook-timestamp": str(stale),
                                          "webhook-signature": sign(sub["secret"], req["headers"]["webhook-id"],
                                                                    stale, req["body"])})
    with pytest.raises(WebhookVerificationError, match="too old"):
        verifier.verify(req["body"], old_headers)
    verifier.verify(req["body"], dict(old_headers, **{  # the same signing, fresh: accepted
        "webhook-timestamp": str(int(time.time())),
        "webhook-signature": sign(sub["secret"], req["headers"]["webhook-id"], int(time.time()), req["body"])}))

    log = settled(platform, sub["id"], 2)
    assert {d["id"] for d in log} == {r["headers"]["webhook-id"] for r in receiver.requests}
    for d in log:
        assert d["status"] == "delivered" and d["attempt_count"] == 1
        [attempt] = d["attempts"]
        assert attempt["status_code"] == 200 and attempt["outcome"] == "delivered"
        assert attempt["duration_ms"] >= 0 and attempt["next_attempt_at"] is None
    shown = subscription(platform, sub["id"])
    assert "secret" not in shown and shown["status"] == "active" and shown["pending"] == 0

    # each delivery is an access to the person's data: audited
    r = platform.call("admin", "GET", f"/v1/people/{A}/access-log")
    assert r.status_code == 200, r.text
    webhooks = [e for e in r.json()["items"] if e.get("action") == "WEBHOOK"]
    assert len(webhooks) == 2 and all(e["status"] == 200 for e in webhooks)


def test_a_budget_created_agreed_and_changed_reaches_social_care_as_signed_webhooks(platform, receiver, people):
    """Issue 5: through the gateway, over RabbitMQ, with the receiver failing at first."""
    A, B = people
    start_dispatcher(platform)
    sub = subscribe(platform, receiver.url(), ["budget.*"])
    receiver.behave = lambda req: 500 if len(receiver.requests) < 3 else 200
    plan_id = make_plan(platform, A)  # plan.* events: not this subscription's business
    r = platform.call("social_care", "POST", "/v1/budgets", json=gym_budget(A, plan_id, str(uuid.uuid4())))
    assert r.status_code == 201, r.text
    bid = r.json()["id"]

    def write(path, version, body, method="POST"):
        r = platform.call("social_care", method, f"/v1/budgets/{bid}{path}", json=body,
                          headers=if_match(version))
        assert r.status_code == 200, r.text
    write("/start-planning", 1, {"care_coordinator": "Jo Smith"})
    write("/agree", 2, {"agreed_by": "Jo Smith", "person_agreed": True})
    write("/activate", 3, {"start_date": "2027-01-01"})
    write("", 4, {"annual_pence": 120000,
                  "holdings": [{"type": "direct_payment", "pence": 60000}, {"type": "notional", "pence": 60000}],
                  "change": {"reason": "Annual review: more support at home", "effective_from": "2027-02-01"}},
          method="PATCH")

    expected = ["budget.created", "budget.planning-started", "budget.agreed", "budget.activated", "budget.changed"]
    wait_for(lambda: [r["event"]["type"] for r in receiver.delivered()] == expected, timeout=30,
             message="the budget's five events, in order")
    verifier = Webhook(sub["secret"])
    for req in receiver.requests:
        event = verifier.verify(req["body"], req["headers"])
        assert event["source"] == "/services/budgets" and event["subject"] == A and event["aggregateid"] == bid
    assert [r["event"]["aggregateversion"] for r in receiver.delivered()] == [1, 2, 3, 4, 5]
    changed = receiver.delivered()[-1]["event"]["data"]["change"]
    assert {"field": "annual_pence", "from": 114000, "to": 120000} in changed["fields"]
    assert changed["reason"] == "Annual review: more support at home" and changed["effective_from"] == "2027-02-01"
    # the failures were retried under the same webhook-id
    first = [r["headers"]["webhook-id"] for r in receiver.requests if r["event"]["type"] == "budget.created"]
    assert len(first) == 4 and len(set(first)) == 1
    tampered = receiver.delivered()[-1]["body"].replace(b"120000", b"990000")
    with pytest.raises(WebhookVerificationError):
        verifier.verify(tampered, receiver.delivered()[-1]["headers"])
    log = settled(platform, sub["id"], 5)
    assert sorted(d["attempt_count"] for d in log) == [1, 1, 1, 1, 4]


def test_coproduction_deliver_one_process_works_another_stands_by_and_takes_over(platform, receiver, people):
    """The real processes: two `coproduction deliver`, one works (a PostgreSQL advisory lock), the
    other takes over when the first is killed -9; SIGTERM stops one cleanly."""
    A, B = people
    saved = dict(platform.env)
    platform.env.update(WEBHOOK_POLL_INTERVAL="50ms", WEBHOOK_RETRY_SCHEDULE="100ms,200ms,300ms,300ms,300ms")
    keys = ("deliver-1", "deliver-2")
    try:
        for key in keys:
            platform.spawn(key, "deliver")
        sub = subscribe(platform, receiver.url(), ["plan.*"])
        make_plan(platform, A)
        wait_for(lambda: len(receiver.delivered()) == 2, timeout=30, message="delivered by a deliver process")
        settled(platform, sub["id"], 2)  # recorded: a kill now cannot leave an accepted one unrecorded
        standby = wait_for(lambda: next((k for k in keys if "standing by" in platform.log(k)), None),
                           message="one process standing by")
        leader = next(k for k in keys if k != standby)
        assert "standing by" not in platform.log(leader)
        platform.kill(leader, 9)
        make_plan(platform, B)
        wait_for(lambda: len(receiver.delivered()) == 4, timeout=30, message="the other process taking over")
        assert len({r["event"]["id"] for r in receiver.delivered()}) == 4  # each accepted once
        assert_in_order_per_person(receiver, platform, [A, B])
        settled(platform, sub["id"], 4)
        assert platform.kill(standby, 15) == 0  # SIGTERM: stops cleanly
    finally:
        platform.env.clear()
        platform.env.update(saved)
        for key in keys:
            if key in platform.procs:
                platform.kill(key, 9)


def test_a_client_sees_and_manages_only_its_own_subscriptions(platform, receiver):
    sub = subscribe(platform, receiver.url(), ["plan.*"], description="care team A")
    db = platform.database("gateway")
    _id, other = clients.create(db, "another council", "ORG2", "social_care")
    db.dispose()
    them = bearer(other)
    assert platform.call(None, "GET", f"/v1/subscriptions/{sub['id']}", headers=them).status_code == 404
    assert platform.call(None, "GET", f"/v1/subscriptions/{sub['id']}/deliveries", headers=them).status_code == 404
    assert platform.call(None, "POST", f"/v1/subscriptions/{sub['id']}/replay", json={},
                         headers=them).status_code == 404
    assert platform.call(None, "DELETE", f"/v1/subscriptions/{sub['id']}", headers=them).status_code == 404
    assert platform.call(None, "GET", "/v1/subscriptions", headers=them).json()["items"] == []
    mine = platform.call("social_care", "GET", "/v1/subscriptions").json()["items"]
    assert [s["id"] for s in mine] == [sub["id"]] and mine[0]["description"] == "care team A"
    assert "secret" not in mine[0]
    # without subscriptions:manage (a GP's preset), no access at all
    assert platform.call("gp", "GET", "/v1/subscriptions").status_code == 403
    assert platform.call("gp", "POST", "/v1/subscriptions",
                         json={"url": receiver.url(), "types": ["plan.*"]}).status_code == 403
    # the owner deletes it
    assert platform.call("social_care", "DELETE", f"/v1/subscriptions/{sub['id']}").status_code == 204
    assert platform.call("social_care", "GET", f"/v1/subscriptions/{sub['id']}").status_code == 404


def test_receiver_down_then_back_gets_everything_in_order_with_stable_ids(platform, receiver, people):
    A, B = people
    start_dispatcher(platform)
    sub = subscribe(platform, receiver.url(), ["plan.*"])
    receiver.behave = lambda req: 500
    make_plan(platform, A)
    make_plan(platform, B)
    wait_for(lambda: len({r["headers"]["webhook-id"] for r in receiver.requests}) >= 2
             and len(receiver.requests) >= 6, message="retries against a failing receiver")
    receiver.stop()  # now refusing connections
    make_plan(platform, A)
    make_plan(platform, B, agree=False)

    def refused_attempts():
        return [a for d in deliveries(platform, sub["id"]) for a in d["attempts"]
                if a["status_code"] is None and "refused" in (a["error"] or "").lower()]
    wait_for(lambda: len(refused_attempts()) >= 3, message="attempts refused while the receiver is down")

    receiver.behave = lambda req: 200
    receiver.start()
    wanted = wait_for(lambda: (lambda ids: ids if len(ids) == 7 else None)(
        change_log_ids(platform, A) + change_log_ids(platform, B)), message="seven events in the change log")
    wait_for(lambda: {r["event"]["id"] for r in receiver.delivered()} == set(wanted), timeout=30,
             message="every event delivered once the receiver is back")
    assert len(receiver.delivered()) == 7  # each accepted once
    assert_in_order_per_person(receiver, platform, [A, B])

    log = {d["id"]: d for d in settled(platform, sub["id"], 7)}
    assert len(log) == 7 and all(d["status"] == "delivered" for d in log.values())
    for event_id in wanted:  # one webhook-id per event, the same on every attempt
        ids = {r["headers"]["webhook-id"] for r in receiver.requests if r["event"]["id"] == event_id}
        assert len(ids) == 1
        d = log[ids.pop()]
        assert d["event_id"] == event_id
        received = [r for r in receiver.requests if r["event"]["id"] == event_id]
        # every attempt is in the log: the ones the receiver answered, and the refused ones
        answered = [a for a in d["attempts"] if a["status_code"] is not None]
        assert [a["status_code"] for a in answered] == [r["status"] for r in received]
        assert d["attempt_count"] == len(d["attempts"]) >= len(received)
        assert [a["attempt"] for a in d["attempts"]] == list(range(1, len(d["attempts"]) + 1))
        for a in d["attempts"][:-1]:
            assert a["outcome"] in ("failed",) and a["next_attempt_at"] and (a["error"] or a["status_code"])
        assert d["attempts"][-1]["outcome"] == "delivered"
    assert any(len(d["attempts"]) > 1 for d in log.values())


def test_one_persons_failing_delivery_holds_back_only_that_person(platform, receiver, people):
    A, B = people
    start_dispatcher(platform)
    subscribe(platform, receiver.url(), ["plan.*"])
    receiver.behave = lambda req: 503 if req["event"]["subject"] == A else 200
    make_plan(platform, A)
    make_plan(platform, B)
    make_plan(platform, B)
    wait_for(lambda: len([r for r in receiver.delivered() if r["event"]["subject"] == B]) == 4,
             message="B's four events delivered while A's first keeps failing")
    a_events = {r["event"]["id"] for r in receiver.requests if r["event"]["subject"] == A}
    assert a_events == {change_log_ids(platform, A)[0]}, "A's later event was sent before its first"
    receiver.behave = lambda req: 200
    wait_for(lambda: len(receiver.delivered()) == 6, message="A's events after it recovers")
    assert_in_order_per_person(receiver, platform, [A, B])


def test_retry_after_is_honoured(platform, receiver, people):
    A, B = people
    start_dispatcher(platform)
    sub = subscribe(platform, receiver.url(), ["plan.*"])
    receiver.behave = lambda req: (429, {"Retry-After": "1"}) if len(receiver.requests) == 0 else 200
    make_plan(platform, A, agree=False)
    wait_for(lambda: receiver.delivered(), timeout=10, message="the retry")
    first, second = receiver.requests[:2]
    assert second["at"] - first["at"] >= 0.95, [  # the schedule alone would have retried within 0.05 s
        (r["status"], r["event"]["type"], r["event"]["subject"], r["headers"]["webhook-id"], r["at"])
        for r in receiver.requests]
    [d] = settled(platform, sub["id"], 1)
    assert d["attempts"][0]["status_code"] == 429 and d["attempts"][1]["status_code"] == 200


def test_410_disables_the_subscription_and_nothing_is_dropped(platform, receiver, people):
    A, B = people
    start_dispatcher(platform)
    sub = subscribe(platform, receiver.url(), ["plan.*"])
    receiver.behave = lambda req: 410
    make_plan(platform, A)
    wait_for(lambda: subscription(platform, sub["id"])["status"] == "disabled", message="disabled on 410")
    shown = subscription(platform, sub["id"])
    # a disabled subscription stops fanning out at its cursor: what follows waits in the change log
    assert "410" in shown["status_reason"] and shown["pending"] in (1, 2)
    make_plan(platform, B, agree=False)  # while disabled: nothing is sent
    time.sleep(0.5)
    assert len(receiver.requests) == 1
    log = deliveries(platform, sub["id"])
    assert {d["status"] for d in log} == {"pending"}
    assert log[-1]["attempts"][0]["outcome"] == "gone" and log[-1]["attempts"][0]["next_attempt_at"] is None

    receiver.behave = lambda req: 200
    r = platform.call("social_care", "POST", f"/v1/subscriptions/{sub['id']}/replay", json={})
    assert r.status_code == 202, r.text
    assert r.json()["subscription"]["status"] == "active"
    wait_for(lambda: len(receiver.delivered()) == 3, message="everything held back, delivered after the replay")
    assert_in_order_per_person(receiver, platform, [A, B])
    # the event refused with 410 went again under its own, unchanged webhook-id
    first = receiver.requests[0]
    again = [r for r in receiver.delivered() if r["event"]["id"] == first["event"]["id"]]
    assert [r["headers"]["webhook-id"] for r in again] == [first["headers"]["webhook-id"]]


def test_a_redirect_is_a_failure_and_is_not_followed(platform, receiver, people):
    A, B = people
    start_dispatcher(platform)
    sub = subscribe(platform, receiver.url("/hook"), ["plan.*"])
    receiver.behave = lambda req: (302, {"Location": receiver.url("/elsewhere")}) if req["path"] == "/hook" else 200
    make_plan(platform, A, agree=False)
    wait_for(lambda: len(receiver.seen(path="/hook")) >= 3, message="retries of the redirected delivery")
    assert receiver.seen(path="/elsewhere") == []
    [d] = deliveries(platform, sub["id"])
    assert d["status"] == "pending"
    assert all(a["status_code"] == 302 and a["outcome"] == "failed" and "not followed" in a["error"]
               for a in d["attempts"])


def test_a_slow_receiver_times_out_and_is_retried(platform, receiver, people):
    A, B = people
    start_dispatcher(platform, timeout=0.5)
    sub = subscribe(platform, receiver.url(), ["plan.*"])

    def slow_first(req):
        if not receiver.requests and not getattr(receiver, "slowed", False):
            receiver.slowed = True
            req["sleep"] = 1.5
        return 200
    receiver.behave = slow_first
    make_plan(platform, A, agree=False)
    wait_for(lambda: len(receiver.requests) == 2, message="the slow answer and the retry")
    [d] = wait_for(lambda: [d for d in deliveries(platform, sub["id"]) if d["status"] == "delivered"],
                   message="delivered on the retry")
    first, second = d["attempts"]
    assert first["outcome"] == "failed" and "timed out" in first["error"] and first["status_code"] is None
    assert 450 <= first["duration_ms"] < 1400
    assert second["outcome"] == "delivered"
    assert len({r["headers"]["webhook-id"] for r in receiver.requests}) == 1


def test_after_the_schedule_the_subscription_is_failing_and_replay_resends(platform, receiver, people):
    A, B = people
    start_dispatcher(platform, schedule=[0.01, 0.02, 0.03])
    sub = subscribe(platform, receiver.url(), ["plan.*"])
    receiver.behave = lambda req: 500
    make_plan(platform, A)
    wait_for(lambda: subscription(platform, sub["id"])["status"] == "failing", message="failing")
    # a failing subscription still takes in new events (plan.agreed may arrive after it failed)
    shown = wait_for(lambda: (lambda sub: sub if sub["pending"] == 2 else None)(subscription(platform, sub["id"])),
                     message="both events pending")
    assert shown["status"] == "failing" and "replay" in shown["status_reason"]
    assert len(receiver.requests) == 4  # the first attempt and three retries, of A's first event only
    receiver.behave = lambda req: 200
    time.sleep(0.3)
    assert len(receiver.requests) == 4  # failing: nothing more until a replay
    make_plan(platform, B, agree=False)  # still recorded for later
    wait_for(lambda: subscription(platform, sub["id"])["pending"] == 3, message="B's event kept")

    r = platform.call("social_care", "POST", f"/v1/subscriptions/{sub['id']}/replay", json={})
    assert r.status_code == 202, r.text
    wait_for(lambda: len(receiver.delivered()) == 3, message="everything after the replay")
    assert_in_order_per_person(receiver, platform, [A, B])

    # a replay from a cursor sends again what was delivered, as new deliveries of the same events
    log = settled(platform, sub["id"], 3)
    first = next(d for d in log if d["event_id"] == receiver.requests[0]["event"]["id"])
    before = {r["headers"]["webhook-id"] for r in receiver.delivered()}
    r = platform.call("social_care", "POST", f"/v1/subscriptions/{sub['id']}/replay",
                      json={"after": first["cursor"]})
    assert r.status_code == 202, r.text
    wait_for(lambda: len(receiver.delivered()) == 5, message="the two events after the cursor again")
    again = receiver.delivered()[3:]
    later = sorted(change_log_ids(platform, A) + change_log_ids(platform, B))
    later.remove(receiver.requests[0]["event"]["id"])  # the first event is at the cursor itself
    assert sorted(r["event"]["id"] for r in again) == sorted(later)
    assert not ({r["headers"]["webhook-id"] for r in again} & before)
    assert sum(d["replay"] for d in deliveries(platform, sub["id"])) == 2
    verifier = Webhook(sub["secret"])
    for req in receiver.requests:
        verifier.verify(req["body"], req["headers"])
    for after in ("x", -1, True, 2 ** 63, "9" * 19, "٣", 1.5, "Y3AxOi0x", {"a": 1}):  # "Y3AxOi0x" is cp1:-1
        bad = platform.call("social_care", "POST", f"/v1/subscriptions/{sub['id']}/replay", json={"after": after})
        assert bad.status_code == 422 and list(bad.json()["errors"]) == ["after"], (after, bad.text)


def test_a_rebuilt_change_log_is_not_sent_again(platform, receiver, people):
    """`coproduction rebuild` empties the change log and applies every event again (new positions):
    subscribers must not get everything a second time."""
    A, B = people
    start_dispatcher(platform)
    sub = subscribe(platform, receiver.url(), ["plan.*"])
    make_plan(platform, A)
    settled(platform, sub["id"], 2)
    db = platform.database("gateway")
    try:
        with db.session() as s:
            rows = s.execute(select(change_log).order_by(change_log.c.position)).mappings().all()
            s.execute(delete(change_log))
            s.execute(change_log.insert(), [{k: v for k, v in r.items() if k != "position"} for r in rows])
    finally:
        db.dispose()
    make_plan(platform, B, agree=False)
    [b_event] = wait_for(lambda: change_log_ids(platform, B), message="B's event in the change log")
    wait_for(lambda: any(r["event"]["id"] == b_event for r in receiver.delivered()), message="the new event")
    time.sleep(0.3)
    # A's events went once. (Other people's events from before the subscription existed now sit
    # after its cursor too, and may be sent: more than asked for, never less.)
    a_events = change_log_ids(platform, A)
    assert sorted(r["event"]["id"] for r in receiver.requests if r["event"]["subject"] == A) == sorted(a_events)


def test_what_the_person_withholds_from_a_role_is_not_sent(platform, receiver, people):
    A, B = people
    start_dispatcher(platform)
    sub = subscribe(platform, receiver.url(), ["plan.*"])
    r = platform.call("admin", "PUT", f"/v1/people/{A}/sharing", json={"withhold": {"social_care": ["plans"]}})
    assert r.status_code == 200, r.text
    make_plan(platform, A, agree=False)
    make_plan(platform, B, agree=False)
    wait_for(lambda: len(receiver.delivered()) == 1, message="B's event")
    log = wait_for(lambda: [d for d in deliveries(platform, sub["id"]) if d["status"] == "withheld"],
                   message="A's event withheld")
    # listed, never sent, and without what it would tell: whose it was, of what type, and why
    assert len(log) == 1 and log[0]["attempts"] == []
    assert (log[0]["subject"], log[0]["type"], log[0]["event_id"], log[0]["last_error"]) == (None, None, None, None)
    assert A not in json.dumps(deliveries(platform, sub["id"]))
    assert [r["event"]["subject"] for r in receiver.requests] == [B]


def test_a_private_address_is_refused_again_at_send_time(platform, receiver, people):
    """Registered while loopback was allowed; a dispatcher that does not allow it never connects."""
    A, B = people
    start_dispatcher(platform, allow_loopback=False)
    sub = subscribe(platform, receiver.url(), ["plan.*"])
    make_plan(platform, A, agree=False)
    [d] = wait_for(lambda: [d for d in deliveries(platform, sub["id"]) if d["attempt_count"] >= 2],
                   message="refused attempts")
    assert receiver.requests == []
    assert all(a["outcome"] == "refused" and "loopback" in a["error"] for a in d["attempts"])


REFUSED_EVERYWHERE = [
    "http://10.0.0.5/hook", "http://192.168.1.20/hook", "http://172.16.0.1/hook",
    "http://169.254.169.254/latest/meta-data", "http://[fd00::1]/hook", "http://[fe80::1]/hook",
    "http://0.0.0.0/hook", "http://224.0.0.1/hook", "http://100.64.0.1/hook", "http://[::ffff:10.0.0.1]/hook",
    "http://240.0.0.1/hook", "ftp://example.org/hook", "file:///etc/passwd", "http://user:pw@example.org/hook",
    "javascript:alert(1)", "http:///nohost",
]
LOOPBACK = ["http://127.0.0.1:9/hook", "http://localhost:9/hook", "http://[::1]:9/hook", "http://127.8.9.10/hook",
            "http://2130706433/hook"]


def test_callback_urls_inside_the_network_are_refused_at_registration(platform):
    """A gateway as compose runs it: ALLOW_LOOPBACK_WEBHOOKS unset."""
    from gateway.app import create_app
    settings = dataclasses.replace(platform.settings("gateway"), allow_loopback_webhooks=False)
    port = free_port()
    server = ThreadServer(create_app(settings), port)
    try:
        headers = bearer(platform.tokens["social_care"])
        for url in REFUSED_EVERYWHERE + LOOPBACK:
            r = platform.http.post(f"http://127.0.0.1:{port}/v1/subscriptions", headers=headers,
                                   json={"url": url, "types": ["plan.*"]}, timeout=30)
            assert r.status_code == 422, (url, r.text)
            assert r.headers["Content-Type"] == "application/problem+json"
            assert list(r.json()["errors"]) == ["url"], (url, r.json())
    finally:
        server.stop()
    assert platform.call("social_care", "GET", "/v1/subscriptions").json()["items"] == []  # nothing stored


def test_with_loopback_allowed_only_loopback_is_let_through(platform):
    for url in REFUSED_EVERYWHERE:
        r = platform.call("social_care", "POST", "/v1/subscriptions", json={"url": url, "types": ["plan.*"]})
        assert r.status_code == 422 and "url" in r.json()["errors"], (url, r.text)
    for url in LOOPBACK:
        r = platform.call("social_care", "POST", "/v1/subscriptions", json={"url": url, "types": ["plan.*"]})
        assert r.status_code == 201, (url, r.text)


def test_bad_subscription_requests(platform, receiver):
    def post(body, role="social_care", **kw):
        return platform.call(role, "POST", "/v1/subscriptions", json=body, **kw)
    r = post({"url": receiver.url(), "types": ["nothing.*"]})
    assert r.status_code == 422 and list(r.json()["errors"]) == ["types"]
    r = post({"url": receiver.url(), "types": ["plan.[a-z]*"]})
    assert r.status_code == 422 and list(r.json()["errors"]) == ["types"]
    r = post({"url": "http://10.1.1.1/", "types": []})
    assert r.status_code == 422 and set(r.json()["errors"]) == {"types"}  # schema errors come first
    r = post({"url": "http://10.1.1.1/", "types": ["nope"]})
    assert r.status_code == 422 and set(r.json()["errors"]) == {"url", "types"}
    r = post({"types": ["plan.*"], "colour": "red"})
    assert r.status_code == 422 and set(r.json()["errors"]) == {"url", "colour"}
    # a client may only subscribe to what it may read
    db = platform.database("gateway")
    _id, token = clients.create(db, "budgets only", "ORG3", "social_care", without=["plans:read"])
    db.dispose()
    r = platform.call(None, "POST", "/v1/subscriptions", json={"url": receiver.url(), "types": ["plan.*"]},
                      headers=bearer(token))
    assert r.status_code == 403 and "plans:read" in r.json()["detail"]
    assert platform.call("social_care", "GET", "/v1/subscriptions").json()["items"] == []
    # Idempotency-Key: the same answer, one subscription
    body = {"url": receiver.url(), "types": ["plan.*"]}
    first = post(body, headers={"Idempotency-Key": "k-1"})
    second = post(body, headers={"Idempotency-Key": "k-1"})
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] == second.json()["id"] and second.headers["Idempotent-Replayed"] == "true"
    assert post(dict(body, types=["plan.agreed"]), headers={"Idempotency-Key": "k-1"}).status_code == 422
    assert len(platform.call("social_care", "GET", "/v1/subscriptions").json()["items"]) == 1
    assert platform.call("social_care", "GET", "/v1/subscriptions/not-a-uuid").status_code == 404
    r = platform.call("social_care", "GET", f"/v1/subscriptions/{first.json()['id']}/deliveries",
                      params={"cursor": "abc"})
    assert r.status_code == 422 and "cursor" in r.json()["errors"]
    r = platform.call("social_care", "GET", f"/v1/subscriptions/{first.json()['id']}/deliveries",
                      params={"cursor": "9" * 19})
    assert r.status_code == 422 and "cursor" in r.json()["errors"]


def test_webhooks_on_the_embedded_defaults(make_platform, receiver):
    """SQLite and the filesystem bus, as `make run` has them."""
    # DATABASE_URL="": the module's PostgreSQL platform is still up and its environment would win
    platform = make_platform(broker="filesystem", database="sqlite", extra_env={"DATABASE_URL": ""}).start()
    assert not platform.database("gateway").is_postgres
    start_dispatcher(platform)
    nhs = new_nhs()
    platform.admit(nhs, "social_care", kind="emergency")
    sub = subscribe(platform, receiver.url(), ["plan.*"])
    receiver.behave = lambda req: 500 if len(receiver.requests) < 2 else 200
    make_plan(platform, nhs)
    make_plan(platform, nhs)
    wait_for(lambda: len(receiver.delivered()) == 4, timeout=30, message="four webhooks")
    verifier = Webhook(sub["secret"])
    for req in receiver.requests:
        verifier.verify(req["body"], req["headers"])
    assert_in_order_per_person(receiver, platform, [nhs])
    log = settled(platform, sub["id"], 4)
    assert sum(d["attempt_count"] for d in log) == 6
    r = platform.call("social_care", "POST", f"/v1/subscriptions/{sub['id']}/replay", json={"after": 0})
    assert r.status_code == 202, r.text
    wait_for(lambda: len(receiver.delivered()) == 8, timeout=30, message="everything again after a replay from 0")
