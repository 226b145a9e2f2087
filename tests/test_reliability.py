"""Issue 10: the fault-injection suite. Each fault runs against the running platform over real
RabbitMQ and PostgreSQL, then every store is compared: the service's outbox (what was committed),
what the broker confirmed, the gateway's change log and inbox (what was applied), the dead letters.

``make test`` runs it small; ``make reliability`` (RELIABILITY_SCALE=full) runs it at full size and
writes the table to docs/reliability.md.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter

import requests

import pytest
from sqlalchemy import func, select

from coproduction.consumer import dead_letters
from coproduction.events import dumps, make_event
from coproduction.service import load
from faults import TcpProxy
from harness import free_port, wait_for
from infra import PgInstance, RabbitNode, infra_dir
from load import Writer, person
from reliability_report import FULL, Row, record

import services.plans.events  # noqa: F401

EVENTS = 10_000 if FULL else 600
#: how long a fault may wait for the flow it interrupts to be under way (on a loaded 2-core machine
#: the full size's first quarter can take minutes)
FLOWING = 900 if FULL else 120


def snapshot(platform) -> dict:
    """What each store holds now."""
    from gateway.models import change_log, inbox
    from services.plans.models import Plan, idempotency_keys
    spec = load("plans")
    db = platform.database("plans")
    with db.session() as s:
        outbox = dict(s.execute(select(spec.outbox.c.event_id, spec.outbox.c.sent_at)).all())
        plans = s.execute(select(func.count()).select_from(Plan)).scalar_one()
        keys = s.execute(select(func.count()).select_from(idempotency_keys)).scalar_one()
    db.dispose()
    gw = platform.database("gateway")
    with gw.session() as s:
        logged = s.execute(select(change_log.c.event_id)).scalars().all()
        inboxed = s.execute(select(func.count()).select_from(inbox)).scalar_one()
    gw.dispose()
    return {"outbox": outbox, "plans": plans, "keys": keys, "logged": logged, "inbox": inboxed}


def settled(platform) -> dict | None:
    snap = snapshot(platform)
    if all(sent is not None for sent in snap["outbox"].values()) and set(snap["logged"]) >= set(snap["outbox"]):
        return snap
    return None


def verdict(fault: str, snap: dict, writer_created: int, recovery: float, dead: int = 0, note: str = "") -> Row:
    committed = set(snap["outbox"])
    delivered = set(snap["logged"])
    duplicated = (len(snap["logged"]) - len(delivered)) + (snap["plans"] - snap["keys"]) + \
                 (snap["inbox"] - len(delivered)) + (snap["plans"] - writer_created)
    row = record(Row(fault=fault, sent=len(committed),
                     confirmed=sum(1 for s in snap["outbox"].values() if s is not None),
                     delivered=len(delivered & committed), lost=len(committed - delivered),
                     duplicated=duplicated, dead_lettered=dead, recovery_s=round(recovery, 1), note=note))
    assert row.lost == 0 and row.duplicated == 0, row
    return row


def start_parts(platform, consumer_process=True, relay_process=True):
    platform.migrate()
    platform.start_web("plans")
    platform.start_web("gateway")
    platform.create_clients()
    if relay_process:
        platform.spawn("relay", "relay", "plans")
    else:
        platform.start_relay("plans")
    if consumer_process:
        platform.spawn("consumer", "consume")
    else:
        platform.start_consumer()


def applied(platform) -> int:
    from gateway.models import change_log
    db = platform.database("gateway")
    with db.session() as s:
        n = s.execute(select(func.count()).select_from(change_log)).scalar_one()
    db.dispose()
    return n


def until_settled(platform, since: float, timeout: float) -> tuple[dict, float]:
    snap = wait_for(lambda: settled(platform), timeout=timeout, interval=0.2, message="every committed event applied")
    return snap, time.monotonic() - since


@pytest.fixture
def rabbit(tmp_path):
    root = infra_dir("rabbit")
    node = RabbitNode("relia" + uuid.uuid4().hex[:6], free_port(), root)
    yield node.start()
    node.stop()
    shutil.rmtree(root, ignore_errors=True)


def test_fault_1_rabbitmq_killed_hard_while_events_flow(make_platform, rabbit):
    platform = make_platform(extra_env={"BROKER_URL": rabbit.url, "BROKER_HEARTBEAT": "2"})
    start_parts(platform)
    writer = Writer(platform, EVENTS).start()
    wait_for(lambda: applied(platform) >= EVENTS // 4, timeout=FLOWING, message="events flowing")
    rabbit.kill9()
    time.sleep(5 if FULL else 2)
    rabbit.start()
    back = time.monotonic()
    writer.join()
    snap, recovery = until_settled(platform, back, 600 if FULL else 120)
    verdict("1. RabbitMQ kill -9, restart", snap, writer.done, recovery)


def test_fault_2_relay_and_consumer_killed_mid_flow(make_platform):
    platform = make_platform()
    start_parts(platform)
    writer = Writer(platform, EVENTS).start()
    kills = 0
    for fraction in (0.2, 0.4, 0.6):
        wait_for(lambda: applied(platform) >= EVENTS * fraction, timeout=FLOWING, message="progress")
        platform.kill("relay", signal.SIGKILL)
        platform.kill("consumer", signal.SIGKILL)  # after some commit and before its ack, in all likelihood
        kills += 2
        platform.spawn("relay", "relay", "plans")
        platform.spawn("consumer", "consume")
        back = time.monotonic()
    writer.join()
    snap, recovery = until_settled(platform, back, 300)
    verdict("2. relay and consumer kill -9 (x3)", snap, writer.done, recovery, note=f"{kills} kills")


def test_fault_3_gateway_down_while_services_take_writes(make_platform):
    platform = make_platform()
    start_parts(platform)
    first = Writer(platform, EVENTS // 3).start()
    first.join()
    platform.kill("consumer", signal.SIGTERM)
    platform.servers.pop("gateway").stop()
    down_for = 120 if FULL else 5
    started = time.monotonic()
    direct = Writer(platform, EVENTS // 3, direct=True, offset=100_000).start()
    direct.join()
    while time.monotonic() - started < down_for:
        time.sleep(0.5)
    platform.start_web("gateway")
    platform.spawn("consumer", "consume")
    back = time.monotonic()
    snap, recovery = until_settled(platform, back, 300)
    verdict(f"3. gateway down {down_for}s, catch-up", snap, first.done + direct.done, recovery)


def test_fault_4_postgresql_restarted_under_load(make_platform, tmp_path):
    root = infra_dir("pg")
    pg = PgInstance(root, free_port()).start()
    try:
        platform = make_platform(extra_env={"DATABASE_URL": pg.url})
        start_parts(platform)
        writer = Writer(platform, EVENTS).start()
        wait_for(lambda: writer.done >= EVENTS // 3, timeout=FLOWING, message="writes flowing")
        pg.restart()
        back = time.monotonic()
        writer.join()
        snap, recovery = until_settled(platform, back, 300)
        bad = {s: n for s, n in writer.statuses.items() if s not in (201, 503, "connection error")}
        assert bad == {}, f"only 201 and 503 are acceptable while PostgreSQL restarts: {writer.statuses}"
        assert writer.retry_after_missing == 0
        verdict("4. PostgreSQL restart under load", snap, writer.done, recovery,
                note=f"503s while down: {writer.statuses.get(503, 0)}")
    finally:
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_fault_5_poison_events_reach_the_dead_letters_and_nothing_stalls(make_platform):
    from test_delivery_guarantees import _publish_raw
    platform = make_platform(max_attempts=3, retry_delay_ms=200)
    start_parts(platform, consumer_process=False, relay_process=False)
    good = make_event(source="plans", type="plan.created", subject=person(1), aggregate_id=str(uuid.uuid4()),
                      aggregate_version=1, data=services.plans.events.SAMPLES["plan.created"])
    unknown = dict(good, id=str(uuid.uuid4()), type="plan.exploded")
    invalid = dict(good, id=str(uuid.uuid4()), data={"plan_id": "x"})
    poison = {"bad envelope": b'{"specversion": "0.3"}', "unknown type": dumps(unknown),
              "payload fails validation": dumps(invalid)}
    for body in poison.values():
        _publish_raw(platform, "plan.created", body)
    writer = Writer(platform, EVENTS // 6).start()
    writer.join()
    back = time.monotonic()
    snap, recovery = until_settled(platform, back, 120)
    dead = wait_for(lambda: (lambda d: d if len(d) >= 3 else None)(dead_letters(platform.bus(), "gateway.portfolio")),
                    timeout=60, message="three dead letters")
    reasons = sorted(d["headers"]["x-dead-reason"] for d in dead)
    assert any("bad envelope" in r for r in reasons)
    assert any("unknown event type plan.exploded" in r for r in reasons)
    assert any("data not valid" in r for r in reasons)
    assert all(d["headers"]["x-dead-attempts"] == 3 for d in dead)
    verdict("5. poison events", snap, writer.done, recovery, dead=len(dead), note="3 poison, retried 3x each")


def test_fault_7_network_stall_noticed_by_heartbeats(make_platform):
    proxy = TcpProxy(5672)
    try:
        platform = make_platform(extra_env={"BROKER_URL": f"amqp://guest:guest@127.0.0.1:{proxy.port}//",
                                            "BROKER_HEARTBEAT": "2"})
        start_parts(platform)
        writer = Writer(platform, EVENTS).start()
        wait_for(lambda: applied(platform) >= EVENTS // 4, timeout=FLOWING, message="events flowing")
        proxy.stall()
        time.sleep(8)  # well past two heartbeat intervals: both sides must notice
        proxy.heal()
        back = time.monotonic()
        writer.join()
        snap, recovery = until_settled(platform, back, 300)
        logs = platform.log("relay") + platform.log("consumer")
        assert "heartbeat" in logs.lower() or "reconnecting" in logs.lower() or "retrying" in logs.lower(), logs[-2000:]
        verdict("7. network stall (TCP proxy)", snap, writer.done, recovery)
    finally:
        proxy.close()


@pytest.fixture
def cluster():
    root = infra_dir("cluster")
    tag = uuid.uuid4().hex[:6]
    nodes = [RabbitNode(f"c{tag}n{i}", free_port(), root) for i in range(3)]
    try:
        for node in nodes:
            node.start()
        for node in nodes[1:]:
            node.join(nodes[0])
        status = nodes[0].ctl("cluster_status")
        assert all(n.name in status for n in nodes), status
        yield nodes
    finally:
        for node in nodes:
            node.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_fault_10_three_node_cluster_loses_a_node_while_events_flow(make_platform, cluster):
    url = ";".join(node.url for node in cluster)  # kombu fails over to the next broker in the list
    platform = make_platform(extra_env={"BROKER_URL": url, "QUEUE_TYPE": "quorum", "BROKER_HEARTBEAT": "2"})
    start_parts(platform)
    writer = Writer(platform, EVENTS).start()
    wait_for(lambda: applied(platform) >= EVENTS // 4, timeout=FLOWING, message="events flowing")
    queues = cluster[1].ctl("-q", "list_queues", "name", "type")
    assert f"{platform.env['BUS_PREFIX']}gateway.portfolio\tquorum" in queues, queues
    cluster[0].kill9()  # the node every client connected to first, and the queues' first leader
    back = time.monotonic()
    writer.join()
    try:
        snap, recovery = until_settled(platform, back, 600 if FULL else 180)
    except AssertionError:
        _diagnose_cluster(platform, cluster[1])
        raise
    verdict("10. 3-node cluster, one node kill -9", snap, writer.done, recovery, note="quorum queues")


def _diagnose_cluster(platform, node) -> None:
    """On failure: what each store and the broker hold, and where each process waits."""
    import sys
    snap = snapshot(platform)
    unsent = sum(1 for v in snap["outbox"].values() if v is None)
    missing = set(snap["outbox"]) - set(snap["logged"])
    out = [f"outbox {len(snap['outbox'])} unsent {unsent} logged {len(snap['logged'])} missing {len(missing)}"]
    for args in (["list_queues", "name", "type", "messages", "messages_ready", "messages_unacknowledged",
                  "consumers", "leader", "members", "online"], ["list_bindings"], ["list_consumers"],
                 ["list_connections", "name", "state"], ["list_channels", "name", "confirm", "messages_unacknowledged", "consumer_count"]):
        out.append(" ".join(args) + "\n" + node.ctl("-q", *args, check=False))
    spy = shutil.which("py-spy") or shutil.which("py-spy", path=os.path.dirname(sys.executable))
    for key, proc in platform.procs.items():  # where each process waits (if py-spy is installed)
        if spy:
            out.append(key + "\n" + subprocess.run([spy, "dump", "--pid", str(proc.pid)],
                                                   capture_output=True, text=True).stdout)
    (platform.var / "diagnosis.txt").write_text("\n".join(out))
    print("\n".join(out))


def _tree(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout.split()
    return [pid, *[p for child in out for p in _tree(int(child))]]


def _rss_mb(pid: int) -> float:
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def sample(platform) -> dict[str, tuple[float, int]]:
    """RSS (MB) and open descriptors of every process of the platform (a gunicorn master's workers too)."""
    out = {}
    for key, proc in platform.procs.items():
        for i, pid in enumerate(_tree(proc.pid)):
            out[f"{key}/{i}"] = (_rss_mb(pid), _fds(pid))
    return out


def test_fault_9_soak_with_faults_on_a_schedule(make_platform, rabbit):
    """A steady mixed load while RabbitMQ, the relay and consumer, and the gateway fail in turn;
    memory and open connections of every process stay flat."""
    duration = 600 if FULL else 40
    platform = make_platform(extra_env={"BROKER_URL": rabbit.url, "BROKER_HEARTBEAT": "2"})
    platform.migrate()
    platform.create_clients()
    platform.spawn_web("plans")
    platform.spawn_web("gateway")
    platform.spawn("relay", "relay", "plans")
    platform.spawn("consumer", "consume")
    writer = Writer(platform, 10**9, threads=2).start()
    stop_reading = threading.Event()
    reads = Counter()

    def read():
        http = requests.Session()
        i = 0
        while not stop_reading.is_set():
            try:
                r = http.get(f"{platform.url}/v1/people/{person(i % 50)}/portfolio",
                             headers={"Authorization": f"Bearer {platform.tokens['hospital']}"}, timeout=10)
                reads[r.status_code] += 1
            except requests.RequestException:
                reads["connection error"] += 1
            i += 1
            time.sleep(0.02)
    reader = threading.Thread(target=read, daemon=True)
    reader.start()

    started = time.monotonic()
    at = lambda fraction: started + duration * fraction  # noqa: E731
    def wait_until(moment):
        while time.monotonic() < moment:
            time.sleep(0.2)

    wait_until(at(0.15))
    baseline = sample(platform)
    wait_until(at(0.25))
    rabbit.kill9()
    time.sleep(2)
    rabbit.start()
    wait_until(at(0.5))
    platform.kill("relay", signal.SIGKILL)
    platform.kill("consumer", signal.SIGKILL)
    platform.spawn("relay", "relay", "plans")
    platform.spawn("consumer", "consume")
    wait_until(at(0.7))
    platform.kill("gateway-web", signal.SIGTERM)
    platform.kill("consumer", signal.SIGTERM)
    direct = Writer(platform, 10**9, threads=1, direct=True, offset=5_000_000).start()
    wait_until(at(0.8))
    direct.stop_event.set()
    direct.join()
    platform.spawn_web("gateway")
    platform.spawn("consumer", "consume")
    wait_until(at(1.0))
    final = sample(platform)
    writer.stop_event.set()
    stop_reading.set()
    writer.join()
    reader.join(10)
    back = time.monotonic()
    snap, recovery = until_settled(platform, back, 600)

    grown = {}
    for key in ("plans-web/0", "plans-web/1"):  # the processes that lived through the whole soak
        (rss0, fd0), (rss1, fd1) = baseline[key], final[key]
        if rss1 > max(rss0 * 1.25, rss0 + 25) or fd1 > fd0 + 10:
            grown[key] = {"rss_mb": (round(rss0), round(rss1)), "fds": (fd0, fd1)}
    assert grown == {}, grown
    assert all(rss < 150 for rss, _fds in final.values()), final
    assert reads[500] == 0 and writer.statuses[500] == 0
    peak = max(rss for rss, _ in final.values())
    verdict(f"9. soak {duration}s, faults 1-3 scheduled", snap, writer.done + direct.done, recovery,
            note=f"{sum(reads.values())} reads; peak RSS {peak:.0f} MB; plans web RSS "
                 f"{baseline['plans-web/1'][0]:.0f}->{final['plans-web/1'][0]:.0f} MB")


def test_fault_6_webhook_receivers_down_slow_gone_and_redirecting(make_platform):
    """One receiver refuses connections, then answers too slowly, then recovers; another answers 410;
    a third answers with a redirect. Every event reaches the first exactly once per webhook-id, in
    order per person; the 410 subscription is disabled with nothing dropped; no redirect is followed."""
    from test_webhooks import Receiver, start_dispatcher, subscribe, deliveries
    platform = make_platform()
    start_parts(platform, consumer_process=False, relay_process=False)
    from gateway import clients  # the GP practice's own system subscribes to its patients' plans
    db = platform.database("gateway")
    _id, platform.tokens["practice_hooks"] = clients.create(db, "practice hooks", "ORGGP", "gp",
                                                            extra=["subscriptions:manage"])
    good, gone, moved = Receiver(), Receiver(), Receiver()
    target = Receiver()  # where the redirect points: it must never be called
    try:
        good.stop()  # down hard: connections refused
        gone.behave = lambda req: 410
        moved.behave = lambda req: (302, {"Location": target.url()})
        sub_good = subscribe(platform, good.url(), role="practice_hooks")
        sub_gone = subscribe(platform, gone.url(), role="practice_hooks")
        sub_moved = subscribe(platform, moved.url(), role="practice_hooks")
        start_dispatcher(platform, timeout=1.0)
        writer = Writer(platform, EVENTS // 6).start()
        writer.join()
        wait_for(lambda: applied(platform) == writer.done, timeout=FLOWING, message="events applied")
        time.sleep(1)
        good.start()
        slow_left = [5]

        def slow_then_fine(req):
            if slow_left[0] > 0:
                slow_left[0] -= 1
                req["sleep"] = 1.5  # beyond the dispatcher's 1 s timeout: a failure, retried
            return 200
        good.behave = slow_then_fine
        back = time.monotonic()
        expected = {e for e in snapshot(platform)["logged"]}
        wait_for(lambda: {r["event"]["id"] for r in good.delivered() if r.get("sleep") is None} >= expected,
                 timeout=180, interval=0.2, message="every event delivered to the recovered receiver")
        recovery = time.monotonic() - back
        accepted = [r for r in good.delivered() if r.get("sleep") is None]
        ids_per_event: dict[str, set] = {}
        for r in good.requests:
            ids_per_event.setdefault(r["event"]["id"], set()).add(r["headers"]["webhook-id"])
        assert all(len(ids) == 1 for ids in ids_per_event.values()), "webhook-id changed between retries"
        duplicated = len(accepted) - len({r["event"]["id"] for r in accepted})
        gone_sub = platform.call("practice_hooks", "GET", f"/v1/subscriptions/{sub_gone['id']}").json()
        assert gone_sub["status"] == "disabled"
        assert gone.requests and all(r["status"] == 410 for r in gone.requests)
        assert deliveries(platform, sub_gone["id"], "practice_hooks")  # its log is kept; replay resends from any cursor
        assert target.requests == []  # the redirect was not followed
        assert all(d["status"] != "delivered" for d in deliveries(platform, sub_moved["id"], "practice_hooks"))
        row = record(Row(fault="6. webhook receiver down, slow, 410, redirect", sent=len(expected),
                         confirmed=len(expected), delivered=len({r["event"]["id"] for r in accepted} & expected),
                         lost=len(expected - {r["event"]["id"] for r in accepted}), duplicated=duplicated,
                         dead_lettered=0, recovery_s=round(recovery, 1),
                         note=f"{len(good.requests)} attempts to the recovering receiver; the 410 disabled its "
                              "subscription (log kept, replayable); the 302 was never followed"))
        assert row.lost == 0 and row.duplicated == 0, row
    finally:
        for r in (good, gone, moved, target):
            r.stop()


# -- issue 18: the audit log's sequencer ------------------------------------------------------------
SEQUENCER_LOCK_HELD = """SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                         WHERE a.application_name = %s AND l.locktype = 'advisory' AND l.granted AND l.objid = %s"""


def audit_state(platform) -> dict:
    from gateway.models import audit_log, audit_tree_heads, audit_tree_nodes
    db = platform.database("gateway")
    # one snapshot for every count: a batch committed between two of them would look like a loss
    with db.engine.connect().execution_options(isolation_level="REPEATABLE READ") as s, s.begin():
        committed = s.execute(select(func.count()).select_from(audit_log)).scalar_one()
        leaves = s.execute(select(audit_log.c.leaf_index).where(audit_log.c.leaf_index.isnot(None))).scalars().all()
        size = s.execute(select(func.max(audit_tree_heads.c.tree_size))).scalar_one() or 0
        stored = s.execute(select(func.count()).select_from(audit_tree_nodes)
                           .where(audit_tree_nodes.c.level == 0)).scalar_one()
    db.dispose()
    return {"committed": committed, "leaves": leaves, "size": size, "stored": stored}


def test_fault_11_audit_sequencer_killed_mid_batch(make_platform):
    """The sequencer is killed with kill -9 three times while it holds its batch lock (inside a
    batch's transaction) and audited reads go on; restarted, it leaves every committed record
    sequenced exactly once, each in a signed head."""
    import psycopg
    from gateway.audit.sequencer import SEQUENCER_LOCK
    from harness import PG_URL
    platform = make_platform(services=())
    platform.migrate()
    platform.start_web("gateway")
    platform.create_clients()
    name = f"{platform.tag}-sequencer"
    seq_env = {"PGAPPNAME": name, "AUDIT_BATCH": "200"}  # small batches: a kill lands in one
    stop = threading.Event()
    reads = Counter()

    def read(i: int):
        http = requests.Session()
        headers = {"Authorization": f"Bearer {platform.tokens['admin']}"}  # no relationship needed: 404s
        n = i
        while not stop.is_set():
            r = http.get(f"{platform.url}/v1/people/{person(n % 50)}/portfolio", headers=headers, timeout=10)
            reads[r.status_code] += 1  # 404: nobody has a portfolio here; audited all the same
            n += 3
    readers = [threading.Thread(target=read, args=(i,), daemon=True) for i in range(3)]
    for t in readers:
        t.start()
    platform.spawn("sequencer", "audit", "sequence", env=seq_env)
    locks = psycopg.connect(PG_URL, autocommit=True)
    in_batch = (f"SELECT ({SEQUENCER_LOCK_HELD}), (SELECT coalesce(max(tree_size), 0) "
                f'FROM "{platform.tag}_gateway".audit_tree_heads)')
    mid_batch = 0
    try:
        for fraction in (0.2, 0.45, 0.7):
            wait_for(lambda: sum(reads.values()) >= EVENTS * fraction, timeout=FLOWING, message="audited reads")
            wait_for(lambda: audit_state(platform)["committed"] - audit_state(platform)["size"] >= 100, timeout=FLOWING,
                     message="a backlog for the sequencer")
            # in one statement: the sequencer holds its batch lock, and the head its batch will replace
            _held, size_before = wait_for(lambda: (lambda row: row if row[0] else None)(
                locks.execute(in_batch, (name, SEQUENCER_LOCK)).fetchone()),
                timeout=60, interval=0.001, message="the sequencer inside a batch")
            platform.kill("sequencer", signal.SIGKILL)
            wait_for(lambda: not locks.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
                                               (name,)).fetchone()[0], message="the killed sequencer's backend gone")
            mid_batch += audit_state(platform)["size"] == size_before  # so its batch was rolled back
            platform.spawn("sequencer", "audit", "sequence", env=seq_env)
        wait_for(lambda: sum(reads.values()) >= EVENTS, timeout=FLOWING, message="every audited read")
    finally:
        stop.set()
        for t in readers:
            t.join(15)
        locks.close()
    back = time.monotonic()
    state = wait_for(lambda: (lambda st: st if st["size"] == st["committed"] else None)(audit_state(platform)),
                     timeout=120, interval=0.1, message="every committed record sequenced")
    recovery = time.monotonic() - back
    platform.kill("sequencer", signal.SIGTERM)
    assert set(reads) == {404}, reads  # every read answered, none refused for want of an audit record
    leaves = state["leaves"]
    row = record(Row(fault="11. audit sequencer kill -9 mid-batch (x3)", sent=state["committed"],
                     confirmed=state["size"], delivered=len(set(leaves) & set(range(state["size"]))),
                     lost=state["committed"] - len(set(leaves)), duplicated=(len(leaves) - len(set(leaves)))
                     + (state["stored"] - len(set(leaves))), dead_lettered=0, recovery_s=round(recovery, 1),
                     note=f"{sum(reads.values())} audited reads; {mid_batch} of 3 kills landed inside a batch (its "
                          "transaction rolled back); every record in a signed head exactly once, `audit verify` clean"))
    assert sorted(leaves) == list(range(state["size"])), "leaf indexes 0..n-1, each once"
    from gateway.audit import keys as audit_keys, verify as audit_verify
    db = platform.database("gateway")
    with db.session() as s:
        report = audit_verify.verify(s, audit_keys.public_key())
    assert report.problems == [] and report.leaves == state["committed"], report.problems[:5]
    assert row.lost == 0 and row.duplicated == 0 and mid_batch >= 1, row
