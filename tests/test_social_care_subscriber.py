"""The direct-AMQP example: a social care system's own durable queue bound to ``budget.#``.

examples/social_care_subscriber.py runs as a separate process (as a social care system would),
against the same RabbitMQ the platform publishes to, and prints each budget change.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid

import pytest

from harness import AMQP_URL, ROOT, wait_for
from test_budgets import budget_body, new_nhs, write

SCRIPT = ROOT / "examples" / "social_care_subscriber.py"


class Running:
    """The example as a child process, its output collected line by line."""

    def __init__(self, platform, queue: str, *args: str):
        env = dict(os.environ, BROKER_URL=AMQP_URL, BUS_PREFIX=platform.env["BUS_PREFIX"],
                   SUBSCRIBER_QUEUE=queue, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen([sys.executable, str(SCRIPT), *args], env=env, cwd=ROOT,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.out: list[str] = []
        self.err: list[str] = []
        for stream, sink in ((self.proc.stdout, self.out), (self.proc.stderr, self.err)):
            threading.Thread(target=self._pump, args=(stream, sink), daemon=True).start()
        wait_for(lambda: any(line.startswith("listening:") for line in self.err), timeout=20,
                 message=f"the subscriber to bind its queue (stderr: {self.err})")

    @staticmethod
    def _pump(stream, sink):
        for line in stream:
            sink.append(line.rstrip("\n"))

    def events(self) -> list[dict]:
        return [json.loads(line) for line in list(self.out) if line.startswith("{")]

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        return self.proc.wait(timeout=20)


@pytest.fixture
def platform(make_platform):
    return make_platform(services=("budgets",)).start()


def test_the_pika_example_receives_budget_changes_as_cloudevents(platform):
    from cloudevents.v1.http import from_json

    as_json = Running(platform, "social_care.json", "--json")
    readable = Running(platform, "social_care.readable")
    try:
        assert f"queue {platform.env['BUS_PREFIX']}social_care.json bound to budget.# on exchange " \
               f"{platform.env['BUS_PREFIX']}coproduction.events" in as_json.err[-1]
        nhs = new_nhs()
        r = platform.call("social_care", "POST", "/v1/budgets", json=budget_body(nhs, str(uuid.uuid4())))
        assert r.status_code == 201, r.text
        bid = r.json()["id"]
        assert write(platform, "POST", f"/v1/budgets/{bid}/start-planning", 1, json={}).status_code == 200
        assert write(platform, "POST", f"/v1/budgets/{bid}/agree", 2,
                     json={"agreed_by": "Jo Smith", "person_agreed": True}).status_code == 200
        assert write(platform, "POST", f"/v1/budgets/{bid}/activate", 3, json={}).status_code == 200
        r = write(platform, "PATCH", f"/v1/budgets/{bid}", 4, json={
            "annual_pence": 120000,
            "holdings": [{"type": "direct_payment", "pence": 60000}, {"type": "notional", "pence": 60000}],
            "change": {"reason": "More support at home", "effective_from": "2027-02-01"}})
        assert r.status_code == 200, r.text

        got = wait_for(lambda: [m for m in as_json.events() if m["event"]["type"] == "budget.changed"],
                       message=f"budget.changed at the subscriber (stdout: {as_json.out}, stderr: {as_json.err})")
        [message] = got
        assert message["routing_key"] == "budget.changed"
        assert message["content_type"] == "application/cloudevents+json" and message["delivery_mode"] == 2
        event = message["event"]
        assert message["message_id"] == event["id"]
        assert event["specversion"] == "1.0" and uuid.UUID(event["id"])
        assert event["source"] == "/services/budgets" and event["subject"] == nhs
        assert event["datacontenttype"] == "application/json"
        assert event["dataschema"] == "urn:coproduction:events:budget.changed:v1"
        assert event["aggregateid"] == bid and event["aggregateversion"] == 5
        assert event["time"].endswith("Z") and event["traceparent"].startswith("00-")
        parsed = from_json(json.dumps(event))  # the CloudEvents SDK reads it as is
        assert parsed["type"] == "budget.changed" and parsed["aggregateversion"] == 5
        change = event["data"]["change"]
        assert {"field": "annual_pence", "from": 114000, "to": 120000} in change["fields"]
        assert change["reason"] == "More support at home" and change["effective_from"] == "2027-02-01"
        assert event["data"]["priorities"][0]["text"] == "Walk my grandson to school"
        assert event["data"]["line_items"][0]["description"] == "Gym membership"
        assert event["data"]["holder"]["relationship"] == "person"
        # every change, in order, once
        assert [(m["event"]["type"], m["event"]["aggregateversion"]) for m in as_json.events()] == [
            ("budget.created", 1), ("budget.planning-started", 2), ("budget.agreed", 3),
            ("budget.activated", 4), ("budget.changed", 5)]

        # the readable form says the same to a person
        wait_for(lambda: any("annual_pence: £1,140.00 → £1,200.00" in line for line in readable.out),
                 message=f"the readable change (stdout: {readable.out})")
        text = "\n".join(readable.out)
        assert "reason: More support at home" in text and "effective from 2027-02-01" in text
        assert "+ line item: Gym membership" in text
    finally:
        assert as_json.stop() == 0
        assert readable.stop() == 0
    assert "stopped after 5 message(s)" in as_json.err[-1]


def test_changes_made_while_the_subscriber_is_stopped_wait_in_its_durable_queue(platform):
    first = Running(platform, "social_care.durable", "--json")
    nhs = new_nhs()
    r = platform.call("social_care", "POST", "/v1/budgets", json=budget_body(nhs, str(uuid.uuid4())))
    bid = r.json()["id"]
    wait_for(lambda: len(first.events()) == 1, message="budget.created at the subscriber")
    assert first.stop() == 0

    assert write(platform, "POST", f"/v1/budgets/{bid}/line-items", 1, json={
        "description": "Swimming lessons", "category": "physical_activity", "sector": "local_authority",
        "pence": 1500, "frequency": "monthly"}).status_code == 201
    assert write(platform, "POST", f"/v1/budgets/{bid}/end", 2, json={"reason": "Moved away"}).status_code == 200

    again = Running(platform, "social_care.durable", "--json", "--passive")
    try:
        events = wait_for(lambda: len(again.events()) == 2 and again.events(),
                          message=f"the changes made while stopped (stdout: {again.out})")
        assert [(m["event"]["type"], m["event"]["aggregateversion"]) for m in events] == [
            ("budget.changed", 2), ("budget.ended", 3)]
        added = events[0]["event"]["data"]["change"]["line_items"]["added"]
        assert [i["description"] for i in added] == ["Swimming lessons"]
    finally:
        assert again.stop() == 0


def test_a_systems_broker_user_binds_only_the_event_types_its_role_may_read(platform):
    """`coproduction broker-permissions`: RabbitMQ itself refuses a social care system's queue a
    binding to decision events (social care may not read decisions), or to everything."""
    import shlex

    import pika
    prefix = platform.env["BUS_PREFIX"]
    user, password = f"care-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    out = subprocess.run([sys.executable, "-m", "bootstrap.cli", "broker-permissions", "--role", "social_care",
                          "--user", user, "--prefix", prefix], env=dict(os.environ, **platform.env), cwd=ROOT,
                         capture_output=True, text=True, check=True)
    subprocess.run(["rabbitmqctl", "-q", "add_user", user, password], check=True, capture_output=True)
    try:
        for line in out.stdout.splitlines():
            subprocess.run(shlex.split(line), check=True, capture_output=True)
        params = pika.URLParameters(f"amqp://{user}:{password}@127.0.0.1:5672/%2F")
        exchange, queue = f"{prefix}coproduction.events", f"{prefix}social_care.allowed"
        with pika.BlockingConnection(params) as conn:
            channel = conn.channel()
            channel.queue_declare(queue, durable=False, auto_delete=True)
            channel.queue_bind(queue, exchange, "budget.#")
            channel.queue_bind(queue, exchange, "plan.created")
            for key in ("decision.#", "#", "group.enrolled"):
                channel = conn.channel()
                with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
                    channel.queue_bind(queue, exchange, key)
                assert refused.value.reply_code == 403, key
            with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:  # not its queue to read
                conn.channel().basic_get(f"{prefix}gateway.portfolio")
            assert refused.value.reply_code == 403
    finally:
        subprocess.run(["rabbitmqctl", "-q", "delete_user", user], capture_output=True)
