"""The registry of the platform's runnable parts: the four domain services and the gateway.

Each part's package declares one :class:`PartSpec` as ``SPEC`` (``services/plans/__init__.py``,
``gateway/__init__.py``) and names it in the ``coproduction.parts`` entry-point group of
pyproject.toml: that group is the one list of parts. Everything that needs to know which parts
exist, their ports, their labels or their processes reads it here, so adding a service is one
package and one line of pyproject.toml.

A spec is plain data; its app module (the app factory and the tables) is imported only when a part
is served, migrated or relayed, so reading the registry stays cheap and imports no part's code.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask
    from sqlalchemy import MetaData

    from .config import Settings
    from .db import Database

GROUP = "coproduction.parts"
SERVICE, GATEWAY = "service", "gateway"


@dataclass(frozen=True)
class Worker:
    """A long-running process of a part besides its web server: its label and its CLI arguments."""
    label: str
    argv: tuple[str, ...]


@dataclass(frozen=True)
class PartSpec:
    name: str
    kind: str  # SERVICE (owns a database, publishes events) or GATEWAY (the one public door)
    port: int
    description: str
    #: the module with ``create_app(settings)`` and ``metadata`` (the part's tables)
    app_module: str
    #: the first path segments under /v1 the part answers (a service: the ones the gateway forwards)
    routes: tuple[str, ...] = ()
    #: the OAuth scopes that guard the part's data
    scopes: tuple[str, ...] = ()
    #: the first word of the event types it publishes ("plan" for plan.created, ...)
    event_prefix: str | None = None
    #: the FHIR R4 resource one of its records is shown as on the FHIR door (docs/fhir.md)
    fhir_resource: str | None = None
    #: how a page names one of its records, in full and short
    label: str = ""
    short_label: str = ""
    #: the processes it runs besides its web server
    workers: tuple[Worker, ...] = ()
    db_pool_size: int = 5
    #: it counts rate limits: in memory (so in one web process) unless a shared store is set
    rate_limited: bool = False

    def create_app(self, settings: "Settings | None" = None) -> "Flask":
        return importlib.import_module(self.app_module).create_app(settings)

    @property
    def metadata(self) -> "MetaData":
        return importlib.import_module(self.app_module).metadata

    @property
    def package(self) -> str:
        return self.app_module.rsplit(".", 1)[0]

    @property
    def migrations(self) -> Path:
        return Path(importlib.import_module(self.package).__file__).resolve().parent / "migrations"

    def check_configuration(self, settings: "Settings") -> None:
        """Refuse to start without what the part needs (ConfigurationError naming what to set)."""
        settings.require_secrets()
        check = getattr(importlib.import_module(self.app_module), "check_configuration", None)
        if check is not None:
            check(settings)

    def database(self, settings: "Settings") -> "Database":
        from .db import Database
        return Database(settings.database_url, settings.db_schema, pool_size=self.db_pool_size,
                        pre_ping=settings.db_pre_ping)

    @property
    def outbox(self):
        metadata = self.metadata
        return metadata.tables["outbox" if "outbox" in metadata.tables else f"{metadata.schema}.outbox"]


@cache
def parts() -> tuple[PartSpec, ...]:
    """Every part, gateway first and then the services in the order of their ports."""
    specs = [point.load() for point in entry_points(group=GROUP)]
    for point, spec in zip(entry_points(group=GROUP), specs):
        if spec.name != point.name:
            raise RuntimeError(f"entry point {point.name} of {GROUP} names the part {spec.name}")
    return tuple(sorted(specs, key=lambda spec: spec.port))


def load(name: str) -> PartSpec:
    for spec in parts():
        if spec.name == name:
            return spec
    raise KeyError(f"no part {name!r} in the {GROUP} entry points (is the package installed?)")


def part_names() -> tuple[str, ...]:
    return tuple(spec.name for spec in parts())


def services() -> tuple[PartSpec, ...]:
    return tuple(spec for spec in parts() if spec.kind == SERVICE)


def service_names() -> tuple[str, ...]:
    return tuple(spec.name for spec in services())


def gateway_spec() -> PartSpec:
    return next(spec for spec in parts() if spec.kind == GATEWAY)
