"""Settings, read only from environment variables (see docs/configuration.md)."""
from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

SERVICE_PORTS = {"gateway": 8000, "plans": 8001, "budgets": 8002, "decisions": 8003, "groups": 8004}
DOMAIN_SERVICES = ("plans", "budgets", "decisions", "groups")


def var_dir() -> Path:
    path = Path(os.environ.get("VAR_DIR", "var")).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def _dev_secret() -> str:
    """A secret kept under var/ so every local process signs and checks with the same key."""
    path = var_dir() / "service-token.secret"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


@dataclass
class Settings:
    service: str
    database_url: str
    db_schema: str | None
    broker_url: str
    bus_prefix: str = ""
    queue_type: str = "classic"
    broker_heartbeat: int = 10
    retry_delay_ms: int = 5000
    max_attempts: int = 5
    service_token_secret: str = ""
    service_urls: dict[str, str] = field(default_factory=dict)
    max_body_bytes: int = 1_000_000
    rate_limit: str = "600 per minute"
    allow_loopback_webhooks: bool = False
    metrics_port: int | None = None
    db_pre_ping: bool = False

    @classmethod
    def from_env(cls, service: str) -> "Settings":
        env = os.environ
        url = env.get(f"{service.upper()}_DATABASE_URL") or env.get("DATABASE_URL")
        if not url:
            url = f"sqlite:///{var_dir() / (service + '.db')}"
        schema = None
        if url.startswith("postgresql"):
            schema = env.get("DB_SCHEMA_PREFIX", "") + service
        broker = env.get("BROKER_URL") or f"filesystem://{var_dir() / 'bus'}"
        urls = {
            name: env.get(f"{name.upper()}_URL", f"http://127.0.0.1:{port}")
            for name, port in SERVICE_PORTS.items()
        }
        secret = env.get("SERVICE_TOKEN_SECRET") or _dev_secret()
        return cls(
            service=service,
            database_url=url,
            db_schema=schema,
            broker_url=broker,
            bus_prefix=env.get("BUS_PREFIX", ""),
            queue_type=env.get("QUEUE_TYPE", "classic"),
            broker_heartbeat=_int("BROKER_HEARTBEAT", 10),
            retry_delay_ms=_int("RETRY_DELAY_MS", 5000),
            max_attempts=_int("MAX_ATTEMPTS", 5),
            service_token_secret=secret,
            service_urls=urls,
            max_body_bytes=_int("MAX_BODY_BYTES", 1_000_000),
            rate_limit=env.get("RATE_LIMIT", "600 per minute"),
            allow_loopback_webhooks=env.get("ALLOW_LOOPBACK_WEBHOOKS", "") in ("1", "true", "yes"),
            metrics_port=int(env["METRICS_PORT"]) if env.get("METRICS_PORT") else None,
            db_pre_ping=env.get("DB_PRE_PING", "") in ("1", "true", "yes"),
        )


def make_bus(settings: "Settings"):
    """The bus as configured: one place, so every process connects the same way."""
    from .bus import Bus
    return Bus(settings.broker_url, settings.bus_prefix, settings.queue_type, settings.broker_heartbeat)
