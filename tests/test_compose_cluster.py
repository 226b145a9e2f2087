"""compose.cluster.yaml for real: three RabbitMQ nodes in one cluster with quorum queues, and the
node most processes talk to killed while plans flow, then started again: nothing lost or applied
twice. `make compose-test`."""
from __future__ import annotations

import json
import re

import pytest

from harness import wait_for
from stack import Stack, running_stack
from test_compose_stack import kill_mid_flow, verdict

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with running_stack(tmp_path_factory.mktemp("engine"), "coproduction-cluster", cluster=True) as running:
        yield running


def running_nodes(stack: Stack) -> int:
    status = stack.exec("rabbitmq-2", "rabbitmqctl", "cluster_status", "--formatter", "json")
    # the CLI warns about RABBITMQ_ERLANG_COOKIE on stdout before the JSON
    return len(json.loads(status[status.index("{"):])["running_nodes"])


def test_one_of_three_broker_nodes_killed_mid_flow(cluster):
    wait_for(lambda: running_nodes(cluster) == 3, timeout=120, interval=2, message="three nodes in one cluster")
    token = cluster.register("gp")
    before, snap, created, recovery = kill_mid_flow(cluster, token, "rabbitmq", offset=2000)
    wait_for(lambda: running_nodes(cluster) == 3, timeout=120, interval=2, message="the killed node back in")
    queues = cluster.exec("rabbitmq-2", "rabbitmqctl", "-q", "list_queues", "name", "type")
    assert re.search(r"gateway\.portfolio\s+quorum", queues), queues
    verdict("14. compose cluster: one of three RabbitMQ nodes killed, started", snap, before, created, recovery,
            note=f"cluster up and healthy in {cluster.up_seconds}s")
