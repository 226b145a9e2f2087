"""Starting only part of the platform, for tests that start its relays and consumers their own way."""
from __future__ import annotations


def web_only(platform):
    """``platform`` migrated, serving the plans service and the gateway, with its clients made; no
    relay and no consumer runs yet."""
    platform.migrate()
    platform.start_web("plans")
    platform.start_web("gateway")
    platform.create_clients()
    return platform
