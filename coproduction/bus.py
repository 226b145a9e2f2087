"""The message bus over kombu: RabbitMQ when BROKER_URL=amqp://..., else kombu's filesystem transport.

Topology (names get BUS_PREFIX in front, so tests can share one broker):
- ``coproduction.events``: durable topic exchange; routing key = event type.
- per consumer queue ``Q``: bound to the keys it needs; rejected messages dead-letter to ``Q.retry``
  (a queue with a TTL that dead-letters back to ``Q``); after the attempt limit the consumer sends
  the message to ``coproduction.dead`` (direct) with routing key ``Q``, bound to ``Q.dead``.
"""
from __future__ import annotations

import logging
import socket
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import os
import uuid

import amqp
import kombu
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps as kombu_dumps

from .events import CONTENT_TYPE

log = logging.getLogger(__name__)

EVENTS_EXCHANGE = "coproduction.events"
DEAD_EXCHANGE = "coproduction.dead"


@dataclass
class OutgoingMessage:
    message_id: str
    routing_key: str
    body: bytes
    headers: dict = field(default_factory=dict)


class PublishError(Exception):
    pass


class _AtomicFilesystemChannel(filesystem.Channel):
    """kombu's filesystem channel writes a message straight into the data folder, where a reader in
    another process can pick the file up before it is written and lose the message ("Expecting
    value"). Here the file is written beside it and renamed in, which is atomic."""

    def _put(self, queue, payload, **kwargs):
        name = f"{int(round(time.monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
        staging = os.path.join(os.path.dirname(self.data_folder_out.rstrip("/")), "staging")
        os.makedirs(staging, exist_ok=True)
        temporary = os.path.join(staging, name)
        with open(temporary, "wb") as f:
            f.write(str_to_bytes(kombu_dumps(payload)))
            f.flush()
            os.fsync(f.fileno())
        os.rename(temporary, os.path.join(self.data_folder_out, name))


class _AtomicFilesystemTransport(filesystem.Transport):
    Channel = _AtomicFilesystemChannel


_FILESYSTEM_TRANSPORTS: dict[str, type] = {}


def _filesystem_transport(root: str) -> type:
    """One transport class per bus folder: kombu keeps the filesystem transport's exchanges and
    bindings in class-wide state, so two buses in one process (tests) would share bindings and
    skip writing them to their own control folder."""
    if root not in _FILESYSTEM_TRANSPORTS:
        from kombu.transport.virtual import BrokerState
        _FILESYSTEM_TRANSPORTS[root] = type("FilesystemTransport", (_AtomicFilesystemTransport,),
                                            {"global_state": BrokerState()})
    return _FILESYSTEM_TRANSPORTS[root]


class Bus:
    def __init__(self, url: str, prefix: str = "", queue_type: str = "classic", heartbeat: int = 10):
        self.url = url
        self.prefix = prefix
        self.queue_type = queue_type
        self.heartbeat = heartbeat
        self.is_amqp = url.startswith(("amqp://", "amqps://", "pyamqp://"))
        self.events_exchange = kombu.Exchange(prefix + EVENTS_EXCHANGE, type="topic", durable=True)
        self.dead_exchange = kombu.Exchange(prefix + DEAD_EXCHANGE, type="direct", durable=True)

    # -- connections ---------------------------------------------------------------------
    def connect(self) -> kombu.Connection:
        if self.is_amqp:
            # read/write timeouts bound a handshake with a broker that accepts TCP but is still
            # booting (otherwise a blocking read waits until the broker resets the connection)
            timeout = max(10, 2 * self.heartbeat)
            conn = kombu.Connection(self.url, heartbeat=self.heartbeat, connect_timeout=5,
                                    transport_options={"read_timeout": timeout, "write_timeout": timeout})
        else:
            root = Path(self.url.split("://", 1)[1] or "var/bus")
            (root / "data").mkdir(parents=True, exist_ok=True)
            (root / "control").mkdir(parents=True, exist_ok=True)
            conn = kombu.Connection(transport=_filesystem_transport(str(root.resolve())), transport_options={
                "data_folder_in": str(root / "data"),
                "data_folder_out": str(root / "data"),
                "control_folder": str(root / "control"),
            })
        conn.ensure_connection(max_retries=3, interval_start=0.2, interval_step=0.5, interval_max=2)
        return conn

    def queue_name(self, name: str) -> str:
        return self.prefix + name

    # -- topology ------------------------------------------------------------------------
    def declare_exchanges(self, channel) -> None:
        self.events_exchange(channel).declare()
        self.dead_exchange(channel).declare()

    def consumer_queues(self, name: str, keys: list[str], retry_delay_ms: int,
                        delivery_limit: int = 20) -> tuple[kombu.Queue, kombu.Queue, kombu.Queue]:
        """The main, retry and dead queues of one consumer."""
        q = self.queue_name(name)
        common: dict = {}
        if self.queue_type == "quorum":
            common = {"x-queue-type": "quorum"}
        main_args = dict(common)
        retry_args = dict(common)
        if self.is_amqp:
            main_args.update({"x-dead-letter-exchange": "", "x-dead-letter-routing-key": q + ".retry"})
            retry_args.update({"x-message-ttl": retry_delay_ms, "x-dead-letter-exchange": "",
                               "x-dead-letter-routing-key": q})
            if self.queue_type == "quorum":
                main_args.update({"x-delivery-limit": delivery_limit,
                                  "x-dead-letter-strategy": "at-least-once",
                                  "x-overflow": "reject-publish"})
                retry_args.update({"x-dead-letter-strategy": "at-least-once",
                                   "x-overflow": "reject-publish"})
        bindings = [kombu.binding(self.events_exchange, routing_key=k) for k in keys]
        main = kombu.Queue(q, bindings=bindings, durable=True, queue_arguments=main_args or None)
        retry = kombu.Queue(q + ".retry", durable=True, queue_arguments=retry_args or None)
        dead = kombu.Queue(q + ".dead", exchange=self.dead_exchange, routing_key=q, durable=True,
                           queue_arguments=common or None)
        return main, retry, dead

    def declare_consumer(self, channel, name: str, keys: list[str], retry_delay_ms: int):
        self.declare_exchanges(channel)
        queues = self.consumer_queues(name, keys, retry_delay_ms)
        for queue in queues:
            queue(channel).declare()
        return queues


@contextmanager
def _corked(sock):
    """Hold a batch's frames back and send them in full packets when the block ends (Linux's
    TCP_CORK), rather than one small packet per message, each of which the broker reads alone."""
    cork = getattr(socket, "TCP_CORK", None)
    if cork is None or sock is None:
        yield
        return
    sock.setsockopt(socket.IPPROTO_TCP, cork, 1)
    try:
        yield
    finally:
        sock.setsockopt(socket.IPPROTO_TCP, cork, 0)


class Publisher:
    """Publishes batches and reports which were confirmed.

    On RabbitMQ it streams publisher confirms: the whole batch goes out with ``mandatory`` and
    ``persistent``, then the acks are collected, so a batch costs one round trip rather than one
    per message. A message the broker returns (no queue bound) or nacks counts as not confirmed.
    """

    def __init__(self, bus: Bus, confirm_timeout: float = 10.0):
        self.bus = bus
        self.confirm_timeout = confirm_timeout
        self.conn: kombu.Connection | None = None
        self._channel = None
        self._producer = None

    def _ensure(self):
        if self.conn is not None:
            return
        conn = self.bus.connect()
        try:
            if self.bus.is_amqp:
                channel = conn.connection.channel()
                self.bus.declare_exchanges(channel)
                channel.confirm_select()
                channel.events["basic_ack"].add(self._on_ack)
                channel.events["basic_nack"].add(self._on_nack)
                channel.events["basic_return"].add(self._on_return)
                self._channel = channel
            else:
                channel = conn.channel()
                self.bus.declare_exchanges(channel)
                self._producer = kombu.Producer(channel)
        except Exception:
            conn.release()
            raise
        self.conn = conn
        self._next_tag = 1

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.release()
            except Exception:  # closing a broken connection must not hide the original error
                pass
        self.conn = None
        self._channel = None
        self._producer = None

    def heartbeat(self) -> None:
        """Read what the broker sent (its heartbeats) and send ours; call often while idle."""
        if self.conn is not None and self.bus.is_amqp:
            try:
                try:
                    self.conn.connection.drain_events(timeout=0)
                except (TimeoutError, BlockingIOError):
                    pass
                self.conn.heartbeat_check()
            except Exception:
                self.close()
                raise

    # -- confirm bookkeeping -------------------------------------------------------------
    def _on_ack(self, tag, multiple):
        self._settle(tag, multiple, True)

    def _on_nack(self, tag, multiple):
        self._settle(tag, multiple, False)

    def _settle(self, tag, multiple, ok):
        tags = [t for t in self._pending if t <= tag] if multiple else [tag]
        for t in tags:
            message_id = self._pending.pop(t, None)
            if message_id is not None:
                self._results[message_id] = ok and message_id not in self._returned
                self._nacked += not ok

    def _on_return(self, exc, exchange, routing_key, message):
        self._returned.add(message.properties.get("message_id"))
        log.warning("broker returned %s (%s): no queue bound for %s", message.properties.get("message_id"),
                    exc, routing_key)

    def publish_batch(self, messages: list[OutgoingMessage], exchange: str | None = None) -> dict[str, bool]:
        """Publish; return message_id -> confirmed. Raises on a connection failure."""
        if not messages:
            return {}
        exchange = exchange if exchange is not None else self.bus.events_exchange.name
        try:
            self._ensure()
            if self.bus.is_amqp:
                return self._publish_amqp(messages, exchange)
            for m in messages:
                self._producer.publish(m.body, exchange=exchange, routing_key=m.routing_key,
                                       content_type=CONTENT_TYPE, content_encoding="utf-8",
                                       headers=m.headers, message_id=m.message_id,
                                       delivery_mode=2, retry=False)
            return {m.message_id: True for m in messages}
        except Exception:
            self.close()
            raise

    def _publish_amqp(self, messages, exchange):
        self._pending: dict[int, str] = {}
        self._results: dict[str, bool] = {}
        self._returned: set[str] = set()
        self._nacked = 0
        with _corked(self.conn.connection.sock):
            for m in messages:
                msg = amqp.Message(m.body, content_type=CONTENT_TYPE, content_encoding="utf-8",
                                   delivery_mode=2, message_id=m.message_id, application_headers=m.headers)
                self._channel.basic_publish(msg, exchange=exchange, routing_key=m.routing_key, mandatory=True)
                self._pending[self._next_tag] = m.message_id
                self._next_tag += 1
        deadline = time.monotonic() + self.confirm_timeout
        while self._pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise PublishError(f"{len(self._pending)} confirms not received in time")
            try:
                self.conn.connection.drain_events(timeout=min(remaining, 1.0))
            except TimeoutError:
                continue
        if self._nacked:
            # A quorum-queue channel that published while the queue's leader was being re-elected
            # can go on nacking every later publish (seen on RabbitMQ 3.10 after a node died); a new
            # channel publishes normally, so the next batch starts on a new connection.
            log.warning("broker nacked %d of %d messages; publishing again on a new connection",
                        self._nacked, len(messages))
            self.close()
        return {m.message_id: self._results.get(m.message_id, False) for m in messages}
