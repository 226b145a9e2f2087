"""What every domain service declares about itself, so the CLI can serve, relay and migrate it."""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

from flask import Flask
from sqlalchemy import MetaData

from .config import Settings
from .db import Database


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    metadata: MetaData
    create_app: Callable[[Settings | None], Flask]

    def database(self, settings: Settings) -> Database:
        return Database(settings.database_url, settings.db_schema, pre_ping=settings.db_pre_ping)

    @property
    def outbox(self):
        return self.metadata.tables[_qualified(self.metadata, "outbox")]


def _qualified(metadata: MetaData, name: str) -> str:
    return name if name in metadata.tables else f"{metadata.schema}.{name}"


def load(name: str) -> ServiceSpec:
    module = importlib.import_module(f"services.{name}.app")
    return module.SPEC
