"""Serving a Flask app with gunicorn (sync workers: the best p99 measured on this machine)."""
from __future__ import annotations

from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger

from .logs import JsonFormatter


class JsonLogger(Logger):
    """gunicorn's own log lines as JSON, like every other line the platform writes."""

    def setup(self, cfg):
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                handler.setFormatter(JsonFormatter(cfg.proc_name or "web"))


class _Gunicorn(BaseApplication):
    def __init__(self, service: str, options: dict):
        self.service = service
        self.options = options
        super().__init__()

    def load_config(self):
        for key, value in self.options.items():
            if key in self.cfg.settings:
                self.cfg.set(key, value)

    def load(self):
        if self.service == "gateway":
            from gateway.app import create_app
        else:
            from .service import load
            create_app = load(self.service).create_app
        return create_app(None)


def migrate(service: str) -> None:
    from .migrate import upgrade
    upgrade(service)


def serve(service: str, host: str, port: int, workers: int) -> None:
    migrate(service)
    _Gunicorn(service, {
        "bind": f"{host}:{port}",
        "workers": workers,
        "worker_class": "sync",
        "timeout": 30,
        "graceful_timeout": 20,
        "keepalive": 5,
        "accesslog": None,
        "control_socket_disable": True,
        "logger_class": JsonLogger,
        "proc_name": f"{service}-web",
        "preload_app": False,
    }).run()
