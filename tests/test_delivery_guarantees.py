"""Issue 2's promises: nothing lost, nothing applied twice, bad events set aside with their reason."""
from __future__ import annotations

import uuid

import pika
from sqlalchemy import func, select

from bodies import plan_body
from coproduction.bus import Publisher
from coproduction.consumer import dead_letters
from coproduction.events import dumps, make_event
from coproduction.service import load
from faults import TcpProxy
from harness import AMQP_URL, wait_for
from nhs import numbered
from partial import web_only

import services.plans.events  # noqa: F401  registers the plan event schemas


def nhs(n: int) -> str:
    """The n-th person of a run."""
    return numbered(n, series=900000000)


def gateway_counts(platform) -> dict:
    from gateway.models import aggregates, change_log, inbox
    db = platform.database("gateway")
    with db.session() as s:
        counts = {t.name: s.execute(select(func.count()).select_from(t)).scalar_one()
                  for t in (aggregates, change_log, inbox)}
    db.dispose()
    return counts


def outbox_counts(platform, service="plans") -> tuple[int, int]:
    spec = load(service)
    db = platform.database(service)
    with db.session() as s:
        total = s.execute(select(func.count()).select_from(spec.outbox)).scalar_one()
        unsent = s.execute(select(func.count()).select_from(spec.outbox)
                           .where(spec.outbox.c.sent_at.is_(None))).scalar_one()
    db.dispose()
    return total, unsent


class CrashAfterPublish(Publisher):
    """Publishes the batch, then dies before the relay can mark it sent (the crash window)."""

    def publish_batch(self, messages, exchange=None):
        super().publish_batch(messages, exchange)
        raise RuntimeError("relay crashed after publishing, before its commit")


def test_relay_crash_between_publish_and_commit_delivers_once(make_platform):
    from coproduction.outbox import Relay
    platform = web_only(make_platform())
    platform.start_consumer()
    people = [nhs(i) for i in range(5)]
    for number in people:
        assert platform.call("gp", "POST", "/v1/plans", json=plan_body(number)).status_code == 201

    crashing = Relay(platform.database("plans"), load("plans").outbox, CrashAfterPublish(platform.bus()))
    try:
        crashing.run_once()
    except RuntimeError:
        pass
    assert outbox_counts(platform) == (5, 5), "the crash must leave every row unsent"
    wait_for(lambda: gateway_counts(platform)["change_log"] == 5, message="first deliveries applied")

    platform.start_relay("plans")  # the restarted relay publishes all five again
    wait_for(lambda: outbox_counts(platform)[1] == 0, message="the relay to mark every row sent")
    wait_for(lambda: gateway_counts(platform)["inbox"] == 5, message="inbox")
    counts = gateway_counts(platform)
    assert counts == {"aggregates": 5, "change_log": 5, "inbox": 5}, counts
    for number in people:
        doc = platform.call("gp", "GET", f"/v1/people/{number}/portfolio").json()
        assert len(doc["priorities"]) == 1 and len(doc["timeline"]) == 1


def test_relay_process_killed_mid_stream_loses_and_doubles_nothing(make_platform):
    platform = web_only(make_platform())
    platform.start_consumer()
    total = 200
    for i in range(total):
        assert platform.call("gp", "POST", "/v1/plans", json=plan_body(nhs(i))).status_code == 201
    platform.spawn("relay", "relay", "plans")
    wait_for(lambda: outbox_counts(platform)[1] < total, timeout=30, message="the relay to start sending")
    platform.kill("relay", 9)
    platform.spawn("relay", "relay", "plans")
    wait_for(lambda: outbox_counts(platform)[1] == 0, timeout=60, message="every row sent after restart")
    wait_for(lambda: gateway_counts(platform)["change_log"] == total, timeout=60, message="all applied")
    assert gateway_counts(platform) == {"aggregates": total, "change_log": total, "inbox": total}


def test_broker_unreachable_while_plans_are_written_then_back(make_platform):
    proxy = TcpProxy(5672)
    try:
        platform = make_platform(extra_env={"BROKER_URL": f"amqp://guest:guest@127.0.0.1:{proxy.port}//"})
        platform.start()
        first = [nhs(1000 + i) for i in range(10)]
        for number in first:
            assert platform.call("gp", "POST", "/v1/plans", json=plan_body(number)).status_code == 201
        wait_for(lambda: gateway_counts(platform)["change_log"] == 10, message="events before the outage")

        proxy.cut()  # the broker is gone: writes still succeed, the outbox keeps their events
        second = [nhs(2000 + i) for i in range(20)]
        for number in second:
            assert platform.call("gp", "POST", "/v1/plans", json=plan_body(number)).status_code == 201
        assert outbox_counts(platform)[1] >= 1

        proxy.heal()
        wait_for(lambda: gateway_counts(platform)["change_log"] == 30, timeout=60,
                 message="every event after the broker came back")
        wait_for(lambda: outbox_counts(platform)[1] == 0, message="outbox drained")
        assert gateway_counts(platform) == {"aggregates": 30, "change_log": 30, "inbox": 30}
    finally:
        proxy.close()


def _publish_raw(platform, routing_key: str, body: bytes, message_id: str | None = None):
    """Publish as an independent client would (pika), straight onto the events exchange."""
    conn = pika.BlockingConnection(pika.URLParameters(AMQP_URL.replace("//", "/%2F").replace("amqp:/%2F", "amqp://")))
    ch = conn.channel()
    ch.confirm_delivery()
    ch.basic_publish(platform.env["BUS_PREFIX"] + "coproduction.events", routing_key, body,
                     pika.BasicProperties(content_type="application/cloudevents+json", delivery_mode=2,
                                          message_id=message_id or str(uuid.uuid4())), mandatory=True)
    conn.close()


def _plan_event(number: str, version: int, text: str, aggregate_id: str, status: str = "draft") -> dict:
    data = dict(services.plans.events.SAMPLES["plan.created"], plan_id=aggregate_id, status=status)
    data["priorities"] = [dict(data["priorities"][0], text=text)]
    return make_event(source="plans", type="plan.created" if version == 1 else "plan.revised",
                      subject=number, aggregate_id=aggregate_id, aggregate_version=version, data=data)


def test_duplicates_older_versions_and_poison(platform):
    number = nhs(3000)
    aggregate = str(uuid.uuid4())
    v1 = _plan_event(number, 1, "Walk to the shops", aggregate)
    v2 = _plan_event(number, 2, "Walk to the park", aggregate, status="active")
    _publish_raw(platform, "plan.revised", dumps(v2))
    _publish_raw(platform, "plan.revised", dumps(v2))  # a duplicate delivery
    _publish_raw(platform, "plan.created", dumps(v1))  # an older version, arriving late
    poison = b'{"specversion": "1.0", "type": "plan.created", "data": '  # cut short
    _publish_raw(platform, "plan.created", poison)
    later = _plan_event(nhs(3001), 1, "See my daughter at Christmas", str(uuid.uuid4()))
    _publish_raw(platform, "plan.created", dumps(later))

    platform.portfolio_shows(nhs(3001), lambda d: d["priorities"])  # the event behind the poison applied
    doc = platform.portfolio_shows(number, lambda d: d["plan"] is not None)
    assert doc["plan"]["version"] == 2 and doc["priorities"][0]["text"] == "Walk to the park"
    dead = wait_for(lambda: dead_letters(platform.bus(), "gateway.portfolio"), timeout=30,
                    message="the poison message in gateway.portfolio.dead")
    assert len(dead) == 1
    assert dead[0]["body"] == poison
    assert "not JSON" in dead[0]["headers"]["x-dead-reason"]
    assert dead[0]["headers"]["x-dead-attempts"] == 3
    counts = gateway_counts(platform)
    assert counts["change_log"] == 3  # v2, v1 (kept in the log, not applied over v2), later
    assert counts["aggregates"] == 2


def test_invalid_nhs_number_and_malformed_json_store_nothing(platform):
    r = platform.call("gp", "POST", "/v1/plans", json=plan_body("9434765918"))
    assert r.status_code == 422
    assert r.headers["Content-Type"] == "application/problem+json"
    assert "nhs_number" in r.json()["errors"]
    r = platform.call("gp", "POST", "/v1/plans", data=b'{"nhs_number": "9434765919", ',
                      headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.headers["Content-Type"] == "application/problem+json"
    r = platform.call("gp", "POST", "/v1/plans", json={"nhs_number": "9434765919", "priorities": [
        {"text": "", "category": "nonsense"}], "surprise": 1})
    assert r.status_code == 422
    assert {"priorities.0.text", "priorities.0.category", "surprise"} <= set(r.json()["errors"])
    assert outbox_counts(platform) == (0, 0)
    r = platform.call("admin", "GET", "/v1/plans?nhs_number=9434765919")
    assert r.status_code == 200 and r.json()["items"] == []


def test_nacked_publishes_are_not_confirmed_and_the_next_batch_uses_a_new_connection():
    """A queue at its length limit with reject-publish nacks; the nacked messages count as not sent
    and the publisher leaves that channel (RabbitMQ 3.10 can nack every later publish of a channel
    that published to a quorum queue during a leader election: fault 10)."""
    from coproduction.bus import Bus, OutgoingMessage
    prefix = f"nack{uuid.uuid4().hex[:8]}."
    bus = Bus(AMQP_URL, prefix=prefix)
    queue = prefix + "limited"
    with bus.connect() as conn:
        channel = conn.channel()
        bus.declare_exchanges(channel)
        channel.queue_declare(queue, durable=True, auto_delete=False,
                              arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
        channel.queue_bind(queue, bus.events_exchange.name, "limited.key")
    publisher = Publisher(bus)
    try:
        results = publisher.publish_batch([OutgoingMessage(f"m{i}", "limited.key", b"{}") for i in range(3)])
        assert results == {"m0": True, "m1": False, "m2": False}
        assert publisher.conn is None  # the nacking channel was dropped
        with bus.connect() as conn:
            conn.channel().queue_purge(queue)
        assert publisher.publish_batch([OutgoingMessage("m3", "limited.key", b"{}")]) == {"m3": True}
        assert publisher.conn is not None
    finally:
        publisher.close()
        with bus.connect() as conn:
            channel = conn.channel()
            channel.queue_delete(queue)
            channel.exchange_delete(bus.events_exchange.name)
            channel.exchange_delete(bus.dead_exchange.name)
