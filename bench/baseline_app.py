"""The baselines' bare Flask app: what Flask, gunicorn and PostgreSQL do with no platform around them.

- ``GET /docs/<key>``: one JSON document read from one indexed PostgreSQL row (jsonb), returned as
  it is: the baseline of every gateway read. The bench fills the table with copies of the very
  documents the gateway returns, so both send the same bytes.
- ``POST /items``: one row inserted and committed, its id returned: the baseline of a write.

Served by gunicorn with the same settings as the platform (``coproduction.web``: sync workers).
Settings from the environment: ``BASELINE_DATABASE_URL`` and ``BASELINE_SCHEMA``.
"""
from __future__ import annotations

import os
import uuid

import psycopg
from flask import Flask, abort, jsonify, request

SCHEMA = os.environ.get("BASELINE_SCHEMA", "bench_baseline")
URL = os.environ.get("BASELINE_DATABASE_URL", "postgresql://root@127.0.0.1:5432/test")

app = Flask("baseline")
app.json.sort_keys = False
_conn: psycopg.Connection | None = None


def conn() -> psycopg.Connection:
    """One connection per worker process (a sync worker serves one request at a time)."""
    global _conn
    if _conn is None or _conn.closed:
        _conn = psycopg.connect(URL, autocommit=True, options=f"-csearch_path={SCHEMA}")
    return _conn


def create_schema(url: str = URL, schema: str = SCHEMA) -> None:
    with psycopg.connect(url, autocommit=True) as c:
        c.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        c.execute(f'CREATE TABLE IF NOT EXISTS "{schema}".docs (key text PRIMARY KEY, document jsonb NOT NULL)')
        c.execute(f'CREATE TABLE IF NOT EXISTS "{schema}".items (id uuid PRIMARY KEY, key text NOT NULL, '
                  'body jsonb NOT NULL, created_at timestamptz NOT NULL DEFAULT now())')


@app.get("/docs/<key>")
def get_doc(key):
    row = conn().execute("SELECT document FROM docs WHERE key = %s", (key,)).fetchone()
    if row is None:
        abort(404)
    return jsonify(row[0])


@app.post("/items")
def post_item():
    body = request.get_json()
    item_id = uuid.uuid4()
    conn().execute("INSERT INTO items (id, key, body) VALUES (%s, %s, %s)",
                   (item_id, str(body.get("nhs_number", "")), psycopg.types.json.Jsonb(body)))
    return jsonify(id=str(item_id), version=1), 201


@app.get("/healthz")
def healthz():
    return jsonify(status="ok")


def serve(port: int, workers: int) -> None:
    """gunicorn with the platform's own settings (coproduction.web.serve)."""
    from gunicorn.app.base import BaseApplication

    class _App(BaseApplication):
        def load_config(self):
            for key, value in {"bind": f"127.0.0.1:{port}", "workers": workers, "worker_class": "sync",
                               "timeout": 30, "graceful_timeout": 20, "keepalive": 5, "accesslog": None,
                               "control_socket_disable": True, "preload_app": False}.items():
                if key in self.cfg.settings:
                    self.cfg.set(key, value)

        def load(self):
            return app

    _App().run()


if __name__ == "__main__":
    import argparse
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    serve(args.port, args.workers)
