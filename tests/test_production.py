"""Issue 9: quorum queues, several relays at once, trace context end to end, graceful shutdown."""
from __future__ import annotations

import json
import signal
import subprocess
import threading
import uuid

import pika

from bodies import plan_body
from calls import if_match
from coproduction.consumer import dead_letters
from harness import AMQP_URL, wait_for
from partial import web_only
from test_delivery_guarantees import _publish_raw, gateway_counts, nhs, outbox_counts

PIKA_URL = AMQP_URL.replace("//", "/%2F").replace("amqp:/%2F", "amqp://")


def queue_types(prefix: str) -> dict[str, str]:
    out = subprocess.run(["rabbitmqctl", "-q", "list_queues", "name", "type"], capture_output=True, text=True)
    rows = [line.split() for line in out.stdout.splitlines() if line.strip()]
    return {r[0]: r[1] for r in rows if r and r[0].startswith(prefix) and len(r) > 1}


def test_quorum_queues_and_poison_to_the_dead_letters(make_platform):
    platform = make_platform(extra_env={"QUEUE_TYPE": "quorum"}).start()
    prefix = platform.env["BUS_PREFIX"]
    types = queue_types(prefix)
    assert types == {prefix + "gateway.portfolio": "quorum", prefix + "gateway.portfolio.retry": "quorum",
                     prefix + "gateway.portfolio.dead": "quorum"}, types
    _publish_raw(platform, "plan.created", b'{"not": "an event"}')
    r = platform.call("gp", "POST", "/v1/plans", json=plan_body(nhs(4000)))
    assert r.status_code == 201
    platform.portfolio_shows(nhs(4000), lambda d: d["plan"])
    dead = wait_for(lambda: dead_letters(platform.bus(), "gateway.portfolio"), timeout=30, message="dead letter")
    assert len(dead) == 1 and "bad envelope" in dead[0]["headers"]["x-dead-reason"]


def test_two_relays_publish_every_event_once_in_order_per_aggregate(make_platform):
    """Two relay processes on one PostgreSQL outbox: each event once, each aggregate's versions in order."""
    platform = web_only(make_platform())
    # our own observer queue sees exactly what the relays published, in the order they did
    conn = pika.BlockingConnection(pika.URLParameters(PIKA_URL))
    ch = conn.channel()
    exchange = platform.env["BUS_PREFIX"] + "coproduction.events"
    ch.exchange_declare(exchange, "topic", durable=True)
    observer = platform.env["BUS_PREFIX"] + "observer"
    ch.queue_declare(observer, durable=True)
    ch.queue_bind(observer, exchange, "plan.*")
    plans = []
    for i in range(60):
        r = platform.call("gp", "POST", "/v1/plans", json=plan_body(nhs(5000 + i)))
        plans.append(r.json()["id"])
    for plan_id in plans:  # version 2 of each, written after all the version 1s
        r = platform.call("gp", "POST", f"/v1/plans/{plan_id}/agree", headers=if_match(1),
                          json={"agreed_by": "Dr C", "person_agreed": True})
        assert r.status_code == 200
    total = len(plans) * 2
    platform.spawn("relay-a", "relay", "plans")
    platform.spawn("relay-b", "relay", "plans")
    wait_for(lambda: outbox_counts(platform)[1] == 0, timeout=60, message="both relays to drain the outbox")
    received = []
    wait_for(lambda: ch.queue_declare(observer, passive=True).method.message_count == total, timeout=30,
             message="every event in the observer queue")
    for _ in range(total):
        _method, props, body = ch.basic_get(observer, auto_ack=True)
        received.append(json.loads(body))
    conn.close()
    ids = [e["id"] for e in received]
    assert len(ids) == len(set(ids)) == total
    seen_versions: dict[str, list[int]] = {}
    for e in received:
        seen_versions.setdefault(e["aggregateid"], []).append(e["aggregateversion"])
    assert all(v == [1, 2] for v in seen_versions.values()), seen_versions
    logs = platform.log("relay-a") + platform.log("relay-b")
    assert "Traceback" not in logs


def test_traceparent_from_the_request_reaches_the_consumers_log(make_platform):
    platform = make_platform()
    platform.migrate()
    platform.start_web("plans")
    platform.start_relay("plans")
    platform.start_web("gateway")
    platform.create_clients()
    platform.spawn("consumer", "consume")
    trace_id = uuid.uuid4().hex
    traceparent = f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"
    r = platform.call("gp", "POST", "/v1/plans", json=plan_body(nhs(6000)), headers={"traceparent": traceparent})
    assert r.status_code == 201
    line = wait_for(lambda: next((json.loads(l) for l in platform.log("consumer").splitlines()
                                  if trace_id in l), None), timeout=30, message="the consumer's log line")
    assert line["traceparent"] == traceparent and line["message"].startswith("applied plan.created")
    assert line["level"] == "info" and line["process"] == "gateway-consumer"


def test_sigterm_lets_the_consumer_and_relay_finish_what_they_hold(make_platform):
    platform = web_only(make_platform())
    platform.spawn("relay", "relay", "plans")
    platform.spawn("consumer", "consume")
    stop = threading.Event()
    written = []

    def write():
        i = 0
        while not stop.is_set() and i < 400:
            if platform.call("gp", "POST", "/v1/plans", json=plan_body(nhs(7000 + i))).status_code == 201:
                written.append(i)
            i += 1
    writer = threading.Thread(target=write)
    writer.start()
    wait_for(lambda: gateway_counts(platform)["change_log"] > 20, timeout=30, message="events flowing")
    assert platform.kill("consumer", signal.SIGTERM) == 0
    assert platform.kill("relay", signal.SIGTERM) == 0
    stop.set()
    writer.join()
    platform.spawn("relay", "relay", "plans")
    platform.spawn("consumer", "consume")
    wait_for(lambda: gateway_counts(platform)["change_log"] == len(written), timeout=60, message="all applied")
    assert gateway_counts(platform) == {"aggregates": len(written), "change_log": len(written), "inbox": len(written)}
    assert outbox_counts(platform) == (len(written), 0)


def test_several_gateway_consumers_share_the_queue_and_agree(make_platform):
    platform = web_only(make_platform(extra_env={"LOG_LEVEL": "DEBUG"}))  # a line per event, batched or not
    platform.start_relay("plans")
    platform.spawn("consumer-a", "consume")
    platform.spawn("consumer-b", "consume")
    people = [nhs(8000 + i) for i in range(40)]
    for number in people:
        r = platform.call("gp", "POST", "/v1/plans", json=plan_body(number))
        platform.call("gp", "POST", f"/v1/plans/{r.json()['id']}/agree", headers=if_match(1),
                      json={"agreed_by": "Dr D", "person_agreed": True})
    wait_for(lambda: gateway_counts(platform)["change_log"] == 80, timeout=60, message="all applied")
    assert gateway_counts(platform) == {"aggregates": 40, "change_log": 80, "inbox": 80}
    for number in people:
        doc = platform.call("gp", "GET", f"/v1/people/{number}/portfolio").json()
        assert doc["plan"]["status"] == "active" and doc["plan"]["version"] == 2 and len(doc["timeline"]) == 2
    both = [platform.log("consumer-a").count("applied plan."), platform.log("consumer-b").count("applied plan.")]
    assert sum(both) >= 80 and min(both) > 0, both  # both took a share of the work
