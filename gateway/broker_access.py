"""What a system reading the events straight from RabbitMQ may bind to: only the event types its
role may read (docs/social-care-amqp.md).

RabbitMQ checks a queue binding's key against the user's topic permissions on the exchange, so a
social care system's broker user that may read ``budget.*`` and ``plan.*`` cannot bind its queue to
``decision.#`` or ``#``. ``coproduction broker-permissions`` prints the ``rabbitmqctl`` commands that
set them up for a role. A raw binding carries every event of those types: the person-by-person
checks (care relationships, sharing preferences) are made only at the gateway's doors (the change
feed, webhooks), so give one only to a system entitled to all of them.
"""
from __future__ import annotations

import re
import shlex

from coproduction.auth import ROLES

from .readers import READERS

EXCHANGE = "coproduction.events"


def readable_families(role: str) -> list[str]:
    """The event type families (``budget``, ``plan`` …) whose service the role may read."""
    scopes = set(ROLES[role])
    return sorted({t.split(".")[0] for t, (service, _kind, _reader) in READERS.items()
                   if f"{service}:read" in scopes or "admin" in scopes})


def commands(role: str, user: str, vhost: str = "/", prefix: str = "") -> list[list[str]]:
    """The rabbitmqctl commands giving ``user`` its own queues (``<prefix><role>.*``) and a read of
    the events exchange limited to the types the role may read."""
    families = readable_families(role)
    if not families:
        raise ValueError(f"the role {role} may read no event type")
    own = f"^{re.escape(prefix + role)}\\..*"
    exchange = re.escape(prefix + EXCHANGE)
    return [
        ["rabbitmqctl", "set_permissions", "-p", vhost, user, own, own, f"^({exchange}|{own[1:]})$"],
        ["rabbitmqctl", "set_topic_permissions", "-p", vhost, user, prefix + EXCHANGE, "^$",
         f"^({'|'.join(families)})\\."],
    ]


def render(role: str, user: str, vhost: str = "/", prefix: str = "") -> str:
    return "\n".join(shlex.join(c) for c in commands(role, user, vhost, prefix))
