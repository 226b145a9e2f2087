"""Settings, read only from environment variables (see docs/configuration.md)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from . import secrets


def var_dir() -> Path:
    path = Path(os.environ.get("VAR_DIR", "var")).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes")


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
    service_token_secret: str | None = None
    session_secret: str | None = None
    service_urls: dict[str, str] = field(default_factory=dict)
    max_body_bytes: int = 1_000_000
    rate_limit: str = "600 per minute"
    rate_limit_anonymous: str = "600 per minute"
    rate_limit_storage_uri: str = "memory://"
    rate_limit_flush_ms: int = 50
    allow_loopback_webhooks: bool = False
    metrics_port: int | None = None
    db_pre_ping: bool = False
    #: a process brings its database up to date as it starts; off where a migrate job does it first
    migrate_on_start: bool = True
    #: the gateway's OAuth 2.0 side (docs/auth.md)
    public_url: str | None = None
    oauth_signing_key: str | None = None
    oauth_previous_signing_key: str | None = None
    oauth_token_lifetime: int = 300
    allow_static_tokens: bool = False
    allow_loopback_jwks_uri: bool = False

    @classmethod
    def from_env(cls, service: str) -> "Settings":
        from .service import parts  # the registry's specs import this module
        env = os.environ
        url = env.get(f"{service.upper()}_DATABASE_URL") or env.get("DATABASE_URL")
        if not url:
            url = f"sqlite:///{var_dir() / (service + '.db')}"
        schema = None
        if url.startswith("postgresql"):
            schema = env.get("DB_SCHEMA_PREFIX", "") + service
        broker = env.get("BROKER_URL") or f"filesystem://{var_dir() / 'bus'}"
        urls = {part.name: env.get(f"{part.name.upper()}_URL", f"http://127.0.0.1:{part.port}") for part in parts()}
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
            service_token_secret=secrets.read("SERVICE_TOKEN_SECRET"),
            session_secret=secrets.read("SESSION_SECRET"),
            service_urls=urls,
            max_body_bytes=_int("MAX_BODY_BYTES", 1_000_000),
            rate_limit=env.get("RATE_LIMIT", "600 per minute"),
            rate_limit_anonymous=env.get("RATE_LIMIT_ANONYMOUS") or env.get("RATE_LIMIT", "600 per minute"),
            rate_limit_storage_uri=env.get("RATE_LIMIT_STORAGE_URI", "memory://"),
            rate_limit_flush_ms=int(env.get("RATE_LIMIT_FLUSH_MS", "50")),
            allow_loopback_webhooks=env.get("ALLOW_LOOPBACK_WEBHOOKS", "") in ("1", "true", "yes"),
            metrics_port=int(env["METRICS_PORT"]) if env.get("METRICS_PORT") else None,
            db_pre_ping=_flag("DB_PRE_PING"),
            migrate_on_start=env.get("MIGRATE_ON_START", "1").strip().lower() not in ("0", "false", "no"),
            public_url=env.get("PUBLIC_URL", "").strip().rstrip("/") or None,
            oauth_signing_key=secrets.read("OAUTH_SIGNING_KEY"),
            oauth_previous_signing_key=secrets.read("OAUTH_PREVIOUS_SIGNING_KEY"),
            oauth_token_lifetime=_int("OAUTH_TOKEN_LIFETIME", 300),
            allow_static_tokens=_flag("ALLOW_STATIC_TOKENS"),
            allow_loopback_jwks_uri=_flag("ALLOW_LOOPBACK_JWKS_URI"),
        )

    def require_secrets(self) -> None:
        """Refuse to serve without good secrets (ConfigurationError naming what to set): every web
        process checks service tokens. A part that signs more checks its own keys too (its app
        module's ``check_configuration``, run by ``PartSpec.check_configuration``)."""
        secrets.check("SERVICE_TOKEN_SECRET", self.service_token_secret)


def make_bus(settings: "Settings"):
    """The bus as configured: one place, so every process connects the same way."""
    from .bus import Bus
    return Bus(settings.broker_url, settings.bus_prefix, settings.queue_type, settings.broker_heartbeat)
