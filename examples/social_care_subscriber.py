#!/usr/bin/env python3
"""A social care system inside the network, following personal health budgets over AMQP.

It binds its OWN durable queue to ``budget.#`` on the topic exchange ``coproduction.events`` and
prints each change as it arrives: what changed from what to what, the line items added, removed
or changed, why, and from when. Nothing here is specific to this project but the message format
(docs/social-care-amqp.md): any AMQP 0-9-1 client can do the same.

    pip install pika
    BROKER_URL=amqp://guest:guest@127.0.0.1:5672/ python examples/social_care_subscriber.py
    python examples/social_care_subscriber.py --json     # one JSON object per message instead

Environment:
    BROKER_URL        the broker (default amqp://guest:guest@127.0.0.1:5672/)
    BUS_PREFIX        prefix of the platform's exchange and of our queue's name (default none)
    SUBSCRIBER_QUEUE  our queue (default social_care.budgets; it gets BUS_PREFIX in front)
    QUEUE_TYPE        classic (default) or quorum, to match a clustered broker

The queue is durable and the messages persistent, so what happens while this program is stopped
is waiting for it when it starts again. A message is acknowledged only once it has been handled;
one that cannot be read is rejected to ``<queue>.dead`` rather than retried forever. Delivery is
at least once: a redelivered or older event (same ``aggregateid``, a version already seen) is
recognised and skipped. A real system keeps those versions in its own database, in the same
transaction as what it does with the event; here they are kept in memory.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from urllib.parse import urlsplit, urlunsplit

import pika
from pika.exceptions import AMQPConnectionError, AMQPError

EXCHANGE = "coproduction.events"
BINDING = "budget.#"
CLOUDEVENT_FIELDS = ("specversion", "id", "source", "type", "subject", "time", "datacontenttype",
                     "dataschema", "aggregateid", "aggregateversion", "data")


def parameters(url: str) -> pika.URLParameters:
    """pika wants the vhost "/" as %2F; accept the kombu style ``amqp://host//`` too."""
    parts = urlsplit(url.replace("pyamqp://", "amqp://", 1))
    if parts.path in ("", "/", "//"):
        parts = parts._replace(path="/%2F")
    params = pika.URLParameters(urlunsplit(parts))
    params.heartbeat = 30
    params.blocked_connection_timeout = 60
    params.connection_attempts = 3
    params.retry_delay = 1
    return params


def pounds(pence) -> str:
    if not isinstance(pence, int):
        return str(pence)
    return f"£{pence / 100:,.2f}"


def shown(field: str, value) -> str:
    if value is None:
        return "none"
    if field.endswith("pence"):
        return pounds(value)
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def describe(event: dict) -> str:
    """A budget event as a person in a social care team would want to read it."""
    data = event.get("data") or {}
    change = data.get("change") or {}
    lines = [f"[{event.get('time')}] {event.get('type')}  person {event.get('subject')}  "
             f"budget {event.get('aggregateid')} v{event.get('aggregateversion')}  "
             f"status {data.get('status')}  {pounds(data.get('annual_pence'))} a year "
             f"({pounds(data.get('allocated_pence'))} allocated)"]
    for f in change.get("fields", []):
        if isinstance(f.get("to"), (list, dict)):
            lines.append(f"  {f['field']} changed")
        else:
            lines.append(f"  {f['field']}: {shown(f['field'], f.get('from'))} → {shown(f['field'], f.get('to'))}")
    items = change.get("line_items") or {}
    for item in items.get("added", []):
        lines.append(f"  + line item: {item.get('description')} ({pounds(item.get('pence'))} "
                     f"{item.get('frequency')}, {item.get('category')}, {item.get('sector')})")
    for item in items.get("removed", []):
        lines.append(f"  - line item: {item.get('description')}")
    for item in items.get("changed", []):
        detail = ", ".join(f"{f['field']} {shown(f['field'], f.get('from'))} → {shown(f['field'], f.get('to'))}"
                           for f in item.get("fields", []))
        lines.append(f"  ~ line item: {item.get('description')}: {detail}")
    if change.get("reason"):
        lines.append(f"  reason: {change['reason']}")
    if change.get("effective_from"):
        lines.append(f"  effective from {change['effective_from']}"
                     + (f" to {change['effective_to']}" if change.get("effective_to") else ""))
    holdings = ", ".join(f"{h.get('type')} {pounds(h.get('pence'))}" for h in data.get("holdings", []))
    if holdings:
        lines.append(f"  holdings: {holdings}")
    priorities = "; ".join(p.get("text", "") for p in data.get("priorities", []))
    if priorities:
        lines.append(f"  what matters: {priorities}")
    return "\n".join(lines)


class Subscriber:
    def __init__(self, url: str, prefix: str, queue: str, queue_type: str, as_json: bool, limit: int | None,
                 passive: bool = False):
        self.params = parameters(url)
        self.exchange = prefix + EXCHANGE
        self.queue = prefix + queue
        self.queue_type = queue_type
        self.as_json = as_json
        self.limit = limit
        self.passive = passive
        self.handled = 0
        self.seen: dict[str, int] = {}  # aggregateid -> newest version handled
        self.connection = None
        self.channel = None
        self.stopping = False

    def declare(self, channel) -> None:
        """The exchange (as the platform declares it), our queue, its dead letters, the binding."""
        common = {"x-queue-type": "quorum"} if self.queue_type == "quorum" else {}
        # passive: only check it exists (for a broker user without configure rights on it)
        channel.exchange_declare(self.exchange, exchange_type="topic", durable=True, passive=self.passive)
        channel.queue_declare(self.queue + ".dead", durable=True, arguments=common or None)
        channel.queue_declare(self.queue, durable=True, arguments=dict(
            common, **{"x-dead-letter-exchange": "", "x-dead-letter-routing-key": self.queue + ".dead"}))
        channel.queue_bind(self.queue, self.exchange, routing_key=BINDING)
        channel.basic_qos(prefetch_count=50)

    def on_message(self, channel, method, properties, body: bytes) -> None:
        try:
            event = json.loads(body)
            missing = [f for f in CLOUDEVENT_FIELDS if f not in event]
            if missing:
                raise ValueError(f"not a CloudEvent: missing {', '.join(missing)}")
        except ValueError as exc:
            print(f"rejected a message ({method.routing_key}): {exc}", file=sys.stderr, flush=True)
            channel.basic_reject(method.delivery_tag, requeue=False)  # -> <queue>.dead
            return
        aggregate, version = event["aggregateid"], event["aggregateversion"]
        if self.seen.get(aggregate, 0) >= version:
            print(f"skipped {event['type']} v{version} of {aggregate}: already handled", file=sys.stderr,
                  flush=True)
            channel.basic_ack(method.delivery_tag)
            return
        if self.as_json:
            print(json.dumps({"routing_key": method.routing_key, "redelivered": method.redelivered,
                              "content_type": properties.content_type, "message_id": properties.message_id,
                              "delivery_mode": properties.delivery_mode, "event": event},
                             ensure_ascii=False), flush=True)
        else:
            print(describe(event), flush=True)
        self.seen[aggregate] = version
        channel.basic_ack(method.delivery_tag)
        self.handled += 1
        if self.limit is not None and self.handled >= self.limit:
            self.stopping = True
            channel.stop_consuming()

    def stop(self, *_signal) -> None:
        """SIGTERM / SIGINT: finish the message in hand, then leave the consume loop."""
        self.stopping = True
        if self.connection is not None and self.connection.is_open and self.channel is not None:
            self.connection.add_callback_threadsafe(self.channel.stop_consuming)

    def run(self) -> int:
        delay = 1.0
        while not self.stopping:
            try:
                self.connection = pika.BlockingConnection(self.params)
                self.channel = self.connection.channel()
                self.declare(self.channel)
                self.channel.basic_consume(self.queue, self.on_message, auto_ack=False)
                print(f"listening: queue {self.queue} bound to {BINDING} on exchange {self.exchange}",
                      file=sys.stderr, flush=True)
                delay = 1.0
                if not self.stopping:
                    self.channel.start_consuming()
            except (AMQPConnectionError, AMQPError, OSError) as exc:
                if self.stopping:
                    break
                print(f"broker unavailable ({type(exc).__name__}: {exc}); reconnecting in {delay:.0f}s",
                      file=sys.stderr, flush=True)
                time.sleep(delay)
                delay = min(delay * 2, 30.0)
            finally:
                if self.connection is not None and self.connection.is_open:
                    try:
                        self.connection.close()
                    except AMQPError:
                        pass
        print(f"stopped after {self.handled} message(s)", file=sys.stderr, flush=True)
        return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print each message as one JSON line")
    parser.add_argument("--queue", default=os.environ.get("SUBSCRIBER_QUEUE", "social_care.budgets"))
    parser.add_argument("--max", type=int, default=None, help="stop after this many messages")
    parser.add_argument("--passive", action="store_true",
                        help="do not declare the exchange, only check that it exists")
    args = parser.parse_args(argv)
    subscriber = Subscriber(os.environ.get("BROKER_URL", "amqp://guest:guest@127.0.0.1:5672/"),
                            os.environ.get("BUS_PREFIX", ""), args.queue,
                            os.environ.get("QUEUE_TYPE", "classic"), args.json, args.max, args.passive)
    signal.signal(signal.SIGTERM, subscriber.stop)
    signal.signal(signal.SIGINT, subscriber.stop)
    return subscriber.run()


if __name__ == "__main__":
    sys.exit(main())
