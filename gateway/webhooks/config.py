"""The dispatcher's settings: the retry schedule, timeouts and concurrency, from the environment."""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from coproduction.config import Settings

DEFAULT_SCHEDULE = "5s,30s,2m,10m,30m,1h,2h,4h,8h,16h,16h"


def parse_duration(value: str) -> float:
    """'500ms', '5s', '2m', '1h', '1.5' (seconds) -> seconds."""
    value = value.strip().lower()
    for suffix, factor in (("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600), ("d", 86400)):
        if value.endswith(suffix):
            return float(value[: -len(suffix)]) * factor
    return float(value)


def parse_schedule(value: str) -> list[float]:
    steps = [parse_duration(part) for part in value.split(",") if part.strip()]
    if not steps or any(s < 0 for s in steps):
        raise ValueError(f"not a retry schedule: {value!r}")
    return steps


@dataclass
class DeliveryConfig:
    #: the upper bound of the delay before retry n (full jitter: uniform in [0, bound])
    schedule: list[float] = field(default_factory=lambda: parse_schedule(DEFAULT_SCHEDULE))
    timeout: float = 10.0          # seconds for the whole request, connect to last byte
    poll_interval: float = 0.5     # seconds between looks at the change log when idle
    concurrency: int = 8           # requests in flight at once
    per_subscription: int = 4      # of which at most this many to one subscription
    batch: int = 500               # change-log rows fanned out per subscription per pass
    allow_loopback: bool = False
    max_retry_after: float = 86400.0

    @classmethod
    def from_env(cls, settings: Settings) -> "DeliveryConfig":
        env = os.environ
        return cls(
            schedule=parse_schedule(env.get("WEBHOOK_RETRY_SCHEDULE", DEFAULT_SCHEDULE)),
            timeout=parse_duration(env.get("WEBHOOK_TIMEOUT", "10s")),
            poll_interval=parse_duration(env.get("WEBHOOK_POLL_INTERVAL", "500ms")),
            concurrency=int(env.get("WEBHOOK_CONCURRENCY", "8")),
            allow_loopback=settings.allow_loopback_webhooks,
        )
