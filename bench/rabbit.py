"""The raw RabbitMQ baselines: kombu publishing and consuming with nothing of the platform around it."""
from __future__ import annotations

import socket
import threading
import time

import kombu

from coproduction.events import CONTENT_TYPE

from .platform import AMQP_URL
from .timing import wait_until


def _raw_topology(prefix: str, name: str) -> tuple[kombu.Exchange, kombu.Queue]:
    exchange = kombu.Exchange(prefix + name, type="topic", durable=True)
    queue = kombu.Queue(prefix + name, exchange=exchange, routing_key="#", durable=True)
    return exchange, queue


def kombu_publish(prefix: str, messages) -> float:
    """Raw kombu publishing of the same bodies and keys, persistent, without confirms: messages/s."""
    exchange, queue = _raw_topology(prefix, "bench.raw")
    with kombu.Connection(AMQP_URL) as conn:
        queue(conn.default_channel).declare()
        queue(conn.default_channel).purge()
        producer = conn.Producer()
        bodies = [(m[0], m[1], m[2].encode()) for m in messages]
        t0 = time.perf_counter()
        for event_id, type_, body in bodies:
            producer.publish(body, exchange=exchange, routing_key=type_, content_type=CONTENT_TYPE,
                             content_encoding="utf-8", message_id=event_id, delivery_mode=2, retry=False)
        elapsed = time.perf_counter() - t0
        # the broker has them all before the consume baseline starts
        wait_until(lambda: queue(conn.default_channel).queue_declare(passive=True).message_count >= len(bodies),
                   60, "the raw queue to hold every message", 0.05)
    return len(bodies) / elapsed


def kombu_consume(prefix: str, n: int, prefetch: int) -> float:
    """Raw kombu consume-and-ack (give it the gateway consumer's prefetch): messages/s."""
    _exchange, queue = _raw_topology(prefix, "bench.raw")
    got = {"n": 0, "t0": None}

    def on_message(body, message):
        if got["t0"] is None:
            got["t0"] = time.perf_counter()
        message.ack()
        got["n"] += 1

    with kombu.Connection(AMQP_URL) as conn:
        with kombu.Consumer(conn, queues=[queue], callbacks=[on_message], prefetch_count=prefetch, no_ack=False):
            deadline = time.monotonic() + 300
            while got["n"] < n and time.monotonic() < deadline:
                try:
                    conn.drain_events(timeout=1)
                except socket.timeout:
                    pass
    t1 = time.perf_counter()
    return (got["n"] - 1) / max(t1 - got["t0"], 1e-6)


def rabbit_hops(prefix: str, n: int) -> list[float]:
    """One-way latency of single persistent messages through RabbitMQ, in milliseconds."""
    exchange, queue = _raw_topology(prefix, "bench.hop")
    received, ready, stop = threading.Event(), threading.Event(), threading.Event()
    latencies: list[float] = []

    def consume():
        def on_message(body, message):
            latencies.append((time.perf_counter() - float(message.headers["sent"])) * 1000)
            message.ack()
            received.set()
        with kombu.Connection(AMQP_URL) as conn:
            queue(conn.default_channel).declare()
            with kombu.Consumer(conn, queues=[queue], callbacks=[on_message], prefetch_count=10):
                ready.set()
                while not stop.is_set():
                    try:
                        conn.drain_events(timeout=0.2)
                    except socket.timeout:
                        pass

    t = threading.Thread(target=consume, daemon=True)
    t.start()
    ready.wait(10)
    with kombu.Connection(AMQP_URL) as conn:
        producer = conn.Producer()
        for i in range(n + 5):
            received.clear()
            producer.publish(b'{"n": %d}' % i, exchange=exchange, routing_key="hop", delivery_mode=2,
                             headers={"sent": repr(time.perf_counter())}, retry=False)
            if not received.wait(10):
                raise RuntimeError("a raw RabbitMQ message did not arrive in 10s")
    stop.set()
    t.join(5)
    return latencies[5:]  # the first few warm the connection up
