"""The consumer: ack only after the effect is committed; retry through a TTL queue; then dead letters.

The handler receives a validated envelope, returns False for a duplicate, and must be idempotent:
it records the event id in an inbox in the same transaction as its effect (see :mod:`coproduction.inbox`) and ignores versions
older than what it holds. A failing message is retried ``max_attempts`` times (counted from the
broker's ``x-death`` header on RabbitMQ, from ``x-attempts`` on the filesystem transport), then
goes to ``<queue>.dead`` with the reason in its headers; the messages behind it keep flowing.

A database that is down is not the message's fault: the message goes back to the queue uncounted
and the consumer reconnects with backoff.
"""
from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Callable

import kombu

from . import metrics
from .bus import Bus, OutgoingMessage, Publisher
from .db import DB_UNAVAILABLE
from .events import InvalidEvent, iso, now, parse_event

log = logging.getLogger(__name__)

TRANSIENT = DB_UNAVAILABLE
STALL_SECONDS = 10


class Transient(Exception):
    """Raised by a handler for a failure that is not the message's fault (retried uncounted)."""


class _Reconnect(Exception):
    pass


class Consumer:
    def __init__(self, bus: Bus, queue: str, keys: list[str], handler: Callable[[dict], None], *,
                 max_attempts: int = 5, retry_delay_ms: int = 5000, prefetch: int = 100,
                 batch_handler: Callable[[list[dict]], None] | None = None, batch_size: int | None = None):
        """``batch_handler``, if given, applies every message already waiting (up to ``batch_size``)
        in one call, so one transaction; if it fails, each message of the batch goes through
        ``handler`` alone, so one bad message is retried and dead-lettered by itself."""
        self.bus = bus
        self.queue = bus.queue_name(queue)
        self.queue_base = queue
        self.keys = keys
        self.handler = handler
        self.max_attempts = max_attempts
        self.retry_delay_ms = retry_delay_ms
        self.prefetch = prefetch
        self.stopping = threading.Event()
        self.ready = threading.Event()
        self._publisher = Publisher(bus)
        self._transient: Exception | None = None
        self.batch_handler = batch_handler
        self.batch_size = batch_size or prefetch
        self._batch: list = []

    def stop(self) -> None:
        self.stopping.set()

    def run(self) -> None:
        delay = 0.2
        while not self.stopping.is_set():
            conn = None
            try:
                conn = self.bus.connect()
                channel = conn.channel()
                main, _retry, _dead = self.bus.declare_consumer(
                    channel, self.queue_base, self.keys, self.retry_delay_ms)
                consumer = kombu.Consumer(channel, queues=[main], on_message=self._on_message,
                                          prefetch_count=self.prefetch, no_ack=False)
                with consumer:
                    self.ready.set()
                    delay = 0.2
                    self._last_delivery = checked = time.monotonic()
                    while not self.stopping.is_set():
                        try:
                            conn.drain_events(timeout=0.5)
                            while self._batch and len(self._batch) < self.batch_size:
                                conn.drain_events(timeout=0)  # only what is already here
                        except socket.timeout:
                            pass
                        if self._batch:
                            self._apply_batch()
                        if self._transient is not None:
                            raise _Reconnect(self._transient)
                        if self.bus.is_amqp:
                            conn.heartbeat_check()
                            idle = time.monotonic() - self._last_delivery
                            if idle > STALL_SECONDS and time.monotonic() - checked > STALL_SECONDS:
                                checked = time.monotonic()
                                self._check_not_stalled(main(channel))
            except Exception as exc:
                if self.stopping.is_set():
                    break
                log.warning("consumer %s: %s; reconnecting in %.1fs", self.queue, exc, delay)
                self.stopping.wait(delay)
                delay = min(delay * 2, 10.0)
            finally:
                self._transient = None
                self._batch = []  # unacknowledged: the broker delivers them again
                if conn is not None:
                    try:
                        conn.release()
                    except Exception:
                        pass
        self._publisher.close()

    # -- one message ---------------------------------------------------------------------
    def _attempts(self, message) -> int:
        headers = message.headers or {}
        if self.bus.is_amqp:
            for death in headers.get("x-death") or []:
                if death.get("queue") == self.queue and death.get("reason") == "rejected":
                    return int(death.get("count", 0))
            return 0
        return int(headers.get("x-attempts", 0))

    def _check_not_stalled(self, queue) -> None:
        """Messages waiting while none arrive for a while: the subscription was lost on the broker's
        side (seen after a quorum queue's leader died with it); subscribe again."""
        waiting = queue.queue_declare(passive=True).message_count
        if waiting:
            raise _Reconnect(f"{waiting} messages wait in the queue but none were delivered for "
                             f"{STALL_SECONDS}s; subscribing again")

    def _on_message(self, body, message=None) -> None:
        message = message or body
        self._last_delivery = time.monotonic()
        if self._transient is not None:  # reconnecting: leave the rest for the next connection
            message.requeue()
            return
        if self.batch_handler is not None:
            self._batch.append(message)
            return
        self._handle(message)

    def _apply_batch(self) -> None:
        batch, self._batch = self._batch, []
        if len(batch) == 1:
            self._handle(batch[0])
            return
        parsed = []
        for message in batch:
            try:
                parsed.append((message, parse_event(message.body)))
            except InvalidEvent as exc:
                self._fail(message, exc)
        if not parsed:
            return
        try:
            self.batch_handler([event for _m, event in parsed])
        except (Transient, *TRANSIENT) as exc:
            log.warning("consumer %s: transient failure, %d messages requeued: %s", self.queue, len(parsed), exc)
            for message, _event in parsed:
                message.requeue()
            self._transient = exc
            return
        except Exception as exc:  # one of them is at fault: apply each alone, so only it is retried
            log.info("consumer %s: a batch of %d failed (%s); applying one by one", self.queue, len(parsed), exc)
            for message, _event in parsed:
                if self._transient is not None:
                    message.requeue()
                else:
                    self._handle(message)
            return
        self._ack_all([message for message, _event in parsed])
        events = [event for _message, event in parsed]
        for event in events:
            self._count(event)
        self._measure_lag(events[-1])
        log.info("applied %d events, the last %s %s v%s", len(events), events[-1]["type"],
                 events[-1]["aggregateid"], events[-1]["aggregateversion"],
                 extra={"event_id": events[-1]["id"], "queue": self.queue_base})

    def _ack_all(self, messages: list) -> None:
        """Acknowledge a batch applied in one commit. On RabbitMQ one ``multiple`` ack covers it:
        every delivery up to the last one is in the batch or was settled before it."""
        if self.bus.is_amqp:
            messages[-1].ack(multiple=True)
            return
        for message in messages:  # kombu's virtual transports ignore ``multiple``
            message.ack()

    def _handle(self, message) -> None:
        try:
            event = parse_event(message.body)
            fresh = self.handler(event)
        except (Transient, *TRANSIENT) as exc:
            log.warning("consumer %s: transient failure, message requeued: %s", self.queue, exc)
            message.requeue()
            self._transient = exc
            return
        except Exception as exc:  # the message's own fault, or a bug: retry, then dead letters
            self._fail(message, exc)
            return
        self._applied(message, event, fresh)

    def _applied(self, message, event: dict, fresh: bool | None = None) -> None:
        message.ack()
        if fresh is False:  # the handler's inbox had it already: a duplicate delivery
            metrics.EVENTS_DUPLICATE.labels(self.queue_base).inc()
            return
        self._count(event, logging.INFO)
        self._measure_lag(event)

    def _count(self, event: dict, level: int = logging.DEBUG) -> None:
        """A batch logs one summary line at INFO; each of its events only at DEBUG."""
        metrics.EVENTS_CONSUMED.labels(self.queue_base).inc()
        if log.isEnabledFor(level):
            log.log(level, "applied %s %s v%s", event["type"], event["aggregateid"], event["aggregateversion"],
                    extra={"event_id": event["id"], "traceparent": event.get("traceparent"),
                           "queue": self.queue_base})

    def _measure_lag(self, event: dict) -> None:
        try:
            lag = (now() - _parse_time(event["time"])).total_seconds()
            metrics.CONSUMER_LAG.labels(self.queue_base).set(max(lag, 0))
        except Exception:
            pass

    def _fail(self, message, exc: Exception) -> None:
        reason = str(exc) if isinstance(exc, InvalidEvent) else f"{type(exc).__name__}: {exc}"
        attempts = self._attempts(message) + 1
        if attempts >= self.max_attempts:
            headers = dict(message.headers or {})
            headers.pop("x-death", None)
            headers.update({
                "x-dead-reason": reason[:1000],
                "x-dead-attempts": attempts,
                "x-dead-queue": self.queue,
                "x-dead-at": iso(now()),
                "x-original-routing-key": message.delivery_info.get("routing_key", ""),
            })
            message_id = message.properties.get("message_id") or ""
            out = OutgoingMessage(message_id, self.queue, message.body, headers)
            confirmed = self._publisher.publish_batch([out], exchange=self.bus.dead_exchange.name)
            if not confirmed.get(message_id):
                raise _Reconnect("dead letter not confirmed")
            message.ack()
            metrics.EVENTS_DEAD.labels(self.queue_base).inc()
            log.error("consumer %s: dead-lettered after %d attempts: %s", self.queue, attempts, reason)
            return
        metrics.EVENTS_RETRIED.labels(self.queue_base).inc()
        log.warning("consumer %s: attempt %d failed: %s", self.queue, attempts, reason)
        if self.bus.is_amqp:
            message.reject(requeue=False)  # dead-letters to <queue>.retry, which holds it for the TTL
            return
        headers = dict(message.headers or {}, **{"x-attempts": attempts})
        out = OutgoingMessage(message.properties.get("message_id") or "", self.queue, message.body, headers)
        self._publisher.publish_batch([out], exchange="")
        message.ack()


def _parse_time(value: str):
    from datetime import datetime
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def dead_letters(bus: Bus, queue: str, limit: int = 1000) -> list[dict]:
    """Read (and acknowledge) what sits in ``<queue>.dead``: for operators and tests."""
    out = []
    with bus.connect() as conn:
        simple = conn.SimpleQueue(bus.consumer_queues(queue, [], 1000)[2])
        try:
            while len(out) < limit:
                try:
                    msg = simple.get(block=True, timeout=0.5)
                except simple.Empty:
                    break
                body = msg.body if isinstance(msg.body, bytes) else msg.body.encode()
                out.append({"headers": dict(msg.headers or {}), "body": body})
                msg.ack()
        finally:
            simple.close()
    return out
