"""Serving a Flask app with gunicorn (sync workers: the best p99 measured on this machine)."""
from __future__ import annotations

import json

from gunicorn import util
from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger

from .logs import JsonFormatter


def _problem_error(sock, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn's own answers to what never reaches the app (a malformed request line, headers too
    large, a bad chunk), as problem+json like every other error of ours. gunicorn writes them all
    through ``util.write_error``: this is that one seam."""
    body = json.dumps({"type": "about:blank", "title": reason, "status": status_int,
                       **({"detail": mesg} if mesg else {})}).encode()
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
            f"Content-Type: application/problem+json\r\nContent-Length: {len(body)}\r\n\r\n")
    util.write_nonblock(sock, head.encode("latin-1") + body)


util.write_error = _problem_error


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
        from .service import load
        return load(self.service).create_app(None)


def migrate(service: str) -> None:
    """Bring the part's database up to date, as a process starts; with ``MIGRATE_ON_START=0`` (compose,
    where a one-shot job migrates first) only check that it is, and refuse to start if not."""
    from .config import Settings
    from .migrate import check_current, upgrade
    if not Settings.from_env(service).migrate_on_start:
        check_current(service)
    else:
        upgrade(service)


def serve(service: str, host: str, port: int, workers: int, one_process: bool = False) -> None:
    """gunicorn with ``workers`` sync workers; ``one_process``: one worker with as many threads, for
    a part whose in-memory state must be the whole part's (the embedded gateway's rate limits)."""
    migrate(service)
    _Gunicorn(service, {
        "bind": f"{host}:{port}",
        "workers": 1 if one_process else workers,
        "worker_class": "gthread" if one_process else "sync",
        "threads": max(4, workers * 4) if one_process else 1,
        "timeout": 30,
        "graceful_timeout": 20,
        "keepalive": 5,
        "accesslog": None,
        "control_socket_disable": True,
        "logger_class": JsonLogger,
        "proc_name": f"{service}-web",
        "preload_app": False,
    }).run()
