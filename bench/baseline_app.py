"""The baselines' bare Flask app: what Flask, gunicorn and PostgreSQL do with no platform around them.

- ``GET /docs/<key>``: one JSON document read from one indexed PostgreSQL row (jsonb), returned as
  it is: the baseline of every gateway read. The bench fills the table with copies of the very
  documents the gateway returns, so both send the same bytes.
- ``GET /audited/<key>``: what an audited read must do and no more: the same indexed read and one
  row appended to an ``audit_log`` shaped like the gateway's (gateway/models.py), committed in one
  transaction before the answer: the baseline of every audited gateway read (issue 18).
- ``POST /items``: one row inserted and committed, its id returned: the baseline of a write.

Served by gunicorn with the same settings as the platform (``coproduction.web``: sync workers).
Settings from the environment: ``BASELINE_DATABASE_URL`` and ``BASELINE_SCHEMA``.
"""
from __future__ import annotations

import os
import uuid
from datetime import datetime, timezone

import psycopg
from flask import Flask, abort, jsonify, request

SCHEMA = os.environ.get("BASELINE_SCHEMA", "bench_baseline")
URL = os.environ.get("BASELINE_DATABASE_URL", "postgresql://root@127.0.0.1:5432/test")

CLIENT_ID = str(uuid.uuid4())  # the one caller the audit rows name

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
        c.execute(f'CREATE TABLE IF NOT EXISTS "{schema}".audit_log (id bigserial PRIMARY KEY, '
                  'at varchar(40) NOT NULL, client_id varchar(36), client_name varchar(200), org varchar(20), '
                  'role varchar(20), scope varchar(40), nhs_number varchar(10), action varchar(20) NOT NULL, '
                  'resource varchar(300) NOT NULL, purpose varchar(200) NOT NULL, outcome varchar(20) NOT NULL, '
                  'status integer NOT NULL, initiative varchar(20), break_glass boolean NOT NULL, '
                  'relationship varchar(40), leaf_index bigint)')
        c.execute(f'CREATE INDEX IF NOT EXISTS ix_audit_log_person ON "{schema}".audit_log (nhs_number, id)')
        c.execute(f'CREATE INDEX IF NOT EXISTS ix_audit_log_unsequenced ON "{schema}".audit_log (id) '
                  'WHERE leaf_index IS NULL')


@app.get("/docs/<key>")
def get_doc(key):
    row = conn().execute("SELECT document FROM docs WHERE key = %s", (key,)).fetchone()
    if row is None:
        abort(404)
    return jsonify(row[0])


AUDIT_ROW = ("INSERT INTO audit_log (at, client_id, client_name, org, role, scope, nhs_number, action, "
             "resource, purpose, outcome, status, break_glass, relationship) VALUES (%s, %s, 'bench hospital', "
             "'BENCH1', 'hospital', 'portfolio:read', %s, 'read', %s, 'direct care', 'permitted', 200, false, "
             "'admission')")


@app.get("/audited/<key>")
def get_audited_doc(key):
    """The read and its audit row in one transaction, committed before the answer is sent."""
    c = conn()
    with c.transaction():
        row = c.execute("SELECT document FROM docs WHERE key = %s", (key,)).fetchone()
        at = datetime.now(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")
        c.execute(AUDIT_ROW, (at, CLIENT_ID, key, request.path))
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
