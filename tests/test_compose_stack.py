"""compose.yaml for real: the image built, every container up and healthy on a Docker engine, the
demo story loaded through the gateway's published port, then the RabbitMQ container and the
gateway consumer's container killed mid-flow and started again, with nothing lost or applied
twice and the audit log verifying. `make compose-test`; tests/stack.py says what differs from a
site's `make up`."""
from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import requests

from harness import ROOT, wait_for
from reliability_report import Row, record
from stack import GATEWAY, Stack, running_stack, wait_gateway, writer

pytestmark = pytest.mark.stack
NHS = "9434765919"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with running_stack(tmp_path_factory.mktemp("engine"), "coproduction-stack") as running:
        yield running


def _portfolio(token: str, nhs: str) -> dict | None:
    r = requests.get(f"{GATEWAY}/v1/people/{nhs}/portfolio", headers={"Authorization": f"Bearer {token}"},
                     timeout=10)
    return r.json() if r.status_code == 200 else None


def snapshot(stack: Stack) -> dict:
    """The plans service's outbox (what was committed) against what the gateway applied."""
    outbox = dict(line.split("|") for line in stack.sql(
        "plans", "SELECT event_id, coalesce(sent_at::text, '') FROM plans.outbox").splitlines())
    logged = stack.sql("gateway", "SELECT event_id FROM gateway.change_log").splitlines()
    plans, keys = stack.sql("plans", "SELECT (SELECT count(*) FROM plans.plans), "
                                     "(SELECT count(*) FROM plans.idempotency_keys)").split("|")
    return {"outbox": outbox, "logged": logged, "plans": int(plans), "keys": int(keys),
            "inbox": int(stack.sql("gateway", "SELECT count(*) FROM gateway.inbox"))}


def settled(stack: Stack) -> dict | None:
    snap = snapshot(stack)
    done = all(snap["outbox"].values()) and set(snap["logged"]) >= set(snap["outbox"])
    return snap if done else None


def verdict(fault: str, snap: dict, before: dict, created: int, recovery: float, note: str) -> Row:
    """The row for what was committed since ``before``; duplicates are counted over everything."""
    committed, delivered = set(snap["outbox"]) - set(before["outbox"]), set(snap["logged"])
    duplicated = (len(snap["logged"]) - len(delivered)) + (snap["inbox"] - len(delivered)) + \
                 (snap["plans"] - snap["keys"]) + (snap["plans"] - before["plans"] - created)
    row = record(Row(fault=fault, sent=len(committed), confirmed=sum(1 for e in committed if snap["outbox"][e]),
                     delivered=len(committed & delivered), lost=len(committed - delivered),
                     duplicated=duplicated, dead_lettered=0, recovery_s=round(recovery, 1), note=note))
    assert row.lost == 0 and row.duplicated == 0, row
    return row


def kill_mid_flow(stack: Stack, token: str, service: str, offset: int, total: int = 300) -> tuple:
    """``total`` plans written through the gateway; ``service``'s container killed a third of the
    way and started again. Returns the snapshot before, the settled one after, the plans
    created and the seconds from the restart until every committed event was applied."""
    before = snapshot(stack)
    load = writer(token, total, offset).start()
    wait_for(lambda: load.done >= total // 3, timeout=180, interval=0.2, message=f"{total // 3} plans written")
    stack.kill(service)
    time.sleep(2)
    stack.start(service)
    restarted = time.monotonic()
    load.join(timeout=600)
    assert len(load.created) == total, load.statuses
    snap = wait_for(lambda: settled(stack), timeout=300, interval=1, message="every committed event applied")
    recovery = time.monotonic() - restarted
    return before, snap, len(load.created), recovery


def test_the_stack_comes_up_healthy_with_its_production_settings(stack):
    containers = stack.containers()
    migrate = containers.pop("migrate")["State"]
    assert migrate["Status"] == "exited" and migrate["ExitCode"] == 0
    for name, c in containers.items():
        assert c["State"]["Health"]["Status"] == "healthy", name
        assert c["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped", name
        assert c["HostConfig"]["LogConfig"]["Config"]["max-size"] == "10m", name
        assert c["HostConfig"]["Memory"] > 0, name
    app = containers["gateway-web"]["Config"]
    assert app["User"] == "coproduction" and app["Healthcheck"]["Test"]
    # the schema was migrated by the job alone: every process started on a database at head
    assert stack.sql("gateway", "SELECT count(*) FROM gateway.alembic_version") == "1"


def test_the_demo_story_through_the_published_port_and_faults_mid_flow(stack, tmp_path):
    tokens = stack.tokens()
    token_file = tmp_path / "tokens.json"
    token_file.write_text(json.dumps(tokens))
    demo = subprocess.run([sys.executable, "-m", "bootstrap.cli", "demo", "--url", GATEWAY, "--token-file",
                           str(token_file), "--timeout", "60"], capture_output=True, text=True, cwd=ROOT)
    assert demo.returncode == 0, (demo.stdout[-3000:], demo.stderr[-3000:])
    doc = wait_for(lambda: _portfolio(tokens["gp"], NHS), timeout=60, message="the demo's portfolio")
    assert doc["plan"]["status"] == "active" and doc["priorities"], doc

    before, snap, created, recovery = kill_mid_flow(stack, tokens["gp"], "rabbitmq", offset=0)
    verdict("12. compose: RabbitMQ container killed, started", snap, before, created, recovery,
            note=f"stack up and healthy in {stack.up_seconds}s")
    before, snap, created, recovery = kill_mid_flow(stack, tokens["gp"], "gateway-consumer", offset=1000)
    verdict("13. compose: gateway consumer container killed, started", snap, before, created, recovery, note="")
    wait_gateway()

    audit = stack.exec("gateway-web", "coproduction", "audit", "verify")
    assert "audit log verified" in audit, audit
