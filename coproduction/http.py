"""The Flask app factory every service and the gateway use, with the shared HTTP contract:
RFC 9457 problem+json errors, /healthz and /readyz, OpenAPI at /openapi.json with docs at /docs,
body limits, request metrics and W3C trace context.
"""
from __future__ import annotations

import http
import json
import logging
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import flask_smorest
import marshmallow as ma
from flask import Flask, Response, current_app, g, has_request_context, jsonify, request
from flask_smorest.utils import prepare_response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from werkzeug.exceptions import HTTPException

from . import metrics
from .config import Settings
from .db import DB_UNAVAILABLE, Database
from .events import TRACEPARENT
from .jsonio import JSONProvider

log = logging.getLogger(__name__)

PROBLEM = "application/problem+json"


class ProblemSchema(ma.Schema):
    """RFC 9457 problem details."""

    type = ma.fields.String()
    title = ma.fields.String()
    status = ma.fields.Integer()
    detail = ma.fields.String()
    errors = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.List(ma.fields.String()))


class Problem(HTTPException):
    """Raise to answer with problem+json."""

    def __init__(self, status: int, title: str, detail: str | None = None,
                 errors: dict[str, list[str]] | None = None, headers: dict | None = None):
        super().__init__(description=detail)
        self.code = status
        self.title = title
        self.detail = detail
        self.errors = errors
        self.headers = headers or {}


def flatten_errors(errors: Any, prefix: str = "") -> dict[str, list[str]]:
    """{"goals": {0: {"description": ["..."]}}} -> {"goals.0.description": ["..."]}."""
    out: dict[str, list[str]] = {}
    if isinstance(errors, dict):
        for key, value in errors.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            if key == "_schema":
                name = prefix or "body"
            out.update(flatten_errors(value, name))
    elif isinstance(errors, list):
        if all(isinstance(e, str) for e in errors):
            out.setdefault(prefix or "body", []).extend(errors)
        else:
            for e in errors:
                out.update(flatten_errors(e, prefix))
    else:
        out.setdefault(prefix or "body", []).append(str(errors))
    return out


def problem_response(status: int, title: str, detail: str | None = None,
                     errors: dict | None = None, headers: dict | None = None) -> Response:
    body = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    if errors:
        body["errors"] = errors
    resp = Response(json.dumps(body), status=status, mimetype=PROBLEM)
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


class Api(flask_smorest.Api):
    ERROR_SCHEMA = ProblemSchema

    def _register_responses(self):
        """Document every error response as what it is on the wire: application/problem+json
        (flask-smorest would say application/json, and an OpenAPI client would be told wrong)."""
        for status in http.HTTPStatus:
            response = {"description": status.phrase}
            if not (100 <= status < 200) and status not in (204, 304):
                response["schema"] = self.ERROR_SCHEMA
            prepare_response(response, self.spec, PROBLEM)
            self.spec.components.response(status.name, response, lazy=True)
        response = {"description": "Default error response", "schema": self.ERROR_SCHEMA}
        prepare_response(response, self.spec, PROBLEM)
        self.spec.components.response(self.DEFAULT_ERROR_RESPONSE_NAME, response, lazy=True)

    def handle_http_exception(self, error):
        if isinstance(error, Problem):
            return problem_response(error.code, error.title, error.detail, error.errors, error.headers)
        if isinstance(getattr(error, "original_exception", None), DB_UNAVAILABLE):
            return problem_response(503, "Service Unavailable", "The database is unavailable; retry shortly.",
                                    headers={"Retry-After": "2"})
        data = getattr(error, "data", None) or {}
        errors = data.get("errors") or data.get("messages")
        # keep what werkzeug's own exception says in its headers (Allow on a 405, as RFC 9110 wants)
        headers = {k: v for k, v in error.get_headers() if k.lower() != "content-type"}
        headers.update(data.get("headers") or {})
        if error.code == 429 and "Retry-After" not in headers:
            headers["Retry-After"] = "1"
        detail = data.get("message") or (error.description if error.code != 422 else None)
        flat = None
        if errors:
            # webargs nests by location ("json", "query"...): drop it, keep the field path
            nested = {}
            for location, fields in errors.items():
                if isinstance(fields, dict):
                    nested.update(fields)
                else:
                    nested[location] = fields
            flat = flatten_errors(nested)
            if error.code == 422 and not detail:
                detail = "Some fields are not valid: " + ", ".join(sorted(flat))
        return problem_response(error.code, error.name, detail, flat, headers)


MAX_JSON_DEPTH = 64
_ESCAPED = re.compile(rb"\\.", re.S)
_STRING = re.compile(rb'"[^"]*"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def json_too_deep(data: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether a JSON text nests arrays and objects more than ``limit`` deep (or is too unbalanced to
    tell), found without parsing it: Python's parser recurses, and 10,000 levels end in a
    RecursionError, a 500. Strings are dropped, then innermost bracket pairs peeled off a level at a
    time; every step is linear (no backtracking on hostile input)."""
    if data.count(b"[") + data.count(b"{") <= limit:
        return False
    brackets = _STRING.sub(b"", _ESCAPED.sub(b"", data)).translate(None, _NOT_BRACKETS)
    for _ in range(limit):
        if not brackets:
            return False
        brackets = brackets.replace(b"[]", b"").replace(b"{}", b"")
    return bool(brackets)


NUL = "\x00"
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
UNSTORABLE_MESSAGE = "Cannot contain the NUL character (U+0000) or a lone UTF-16 surrogate (U+D800 to U+DFFF)."


def _unstorable_paths(value: Any, path: str = "") -> list[str]:
    """Where in a parsed JSON document a string (or a key) holds U+0000 or a lone surrogate."""
    if isinstance(value, str):
        return [path or "body"] if UNSTORABLE.search(value) else []
    found: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            name = f"{path}.{key}" if path else str(key)
            found += [name] if UNSTORABLE.search(key) else _unstorable_paths(item, name)
    elif isinstance(value, list):
        for n, item in enumerate(value):
            found += _unstorable_paths(item, f"{path}.{n}" if path else str(n))
    return found


def _refuse_unstorable() -> None:
    """U+0000 and lone UTF-16 surrogates (``"\\ud800"``) are valid JSON escapes, but no PostgreSQL
    text or jsonb column can hold them (nor can UTF-8 encode a surrogate): refuse them up front (422
    naming the field, 400 in the path) instead of failing on the insert."""
    if NUL in request.path:
        raise Problem(400, "Bad Request", "The URL contains a NUL character (%00).")
    errors = {}
    if request.query_string:
        errors = {key: [UNSTORABLE_MESSAGE] for key, values in request.args.lists()
                  if UNSTORABLE.search(key) or any(UNSTORABLE.search(v) for v in values)}
    if request.method in ("POST", "PUT", "PATCH") and request.is_json:
        data = request.get_data(cache=True)
        if b"\\u0000" in data or b"\\ud" in data.lower():  # JSON carries them only escaped
            try:
                parsed = json.loads(data)
            except (ValueError, RecursionError):
                parsed = None  # malformed: the route's own parsing answers 400
            errors.update({name: [UNSTORABLE_MESSAGE] for name in _unstorable_paths(parsed)})
    if errors:
        raise Problem(422, "Unprocessable Content", "Some fields are not valid: " + ", ".join(sorted(errors)),
                      errors=errors)


#: how much of a body over the limit is read (and thrown away) so that a client which writes its
#: whole body before reading the answer still reads the 413; past this the connection is just closed
DRAIN_BYTES = 16 * 1024 * 1024


def _too_large(limit: int, length: int | None) -> Problem:
    """The 413, after reading and discarding what is left of the body (up to DRAIN_BYTES)."""
    stream = request.environ.get("wsgi.input")
    left = min(length, DRAIN_BYTES) if length is not None else DRAIN_BYTES
    try:
        while stream is not None and left > 0:
            chunk = stream.read(min(65536, left))
            if not chunk:
                break
            left -= len(chunk)
    except (OSError, ValueError):
        pass  # the client went away: nobody is left to read the answer
    return Problem(413, "Content Too Large", f"The request body exceeds {limit} bytes.",
                   headers={"Connection": "close"})


#: a request the gateway sends only to learn every bad field of a create it refused (its subject
#: could not be settled): validated like any other, it can never store anything
VALIDATE_ONLY = "X-Validate-Only"


def refuse_if_validating_only() -> None:
    if has_request_context() and request.headers.get(VALIDATE_ONLY) == "1":
        raise Problem(400, "Bad Request", "A validation-only request stores nothing.")


@dataclass
class ServiceContext:
    """What a running service holds: its settings, its database and its own tables."""

    name: str
    settings: Settings
    db: Database
    metadata: Any
    tables: dict[str, Any] = field(default_factory=dict)


def ctx() -> ServiceContext:
    return current_app.extensions["coproduction"]


def traceparent() -> str:
    value = getattr(g, "traceparent", None)
    if value is None:
        ids = secrets.token_hex(24)  # a trace id and a span id
        value = f"00-{ids[:32]}-{ids[32:]}-01"
        g.traceparent = value
    return value


def create_app(name: str, title: str, *, settings: Settings, db: Database, metadata,
               blueprints: list, tables: dict | None = None, description: str = "") -> Flask:
    """The one way every service and the gateway build their Flask app."""
    settings.require_secrets()
    app = Flask(name)
    app.config.update(
        API_TITLE=title,
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="/docs",
        OPENAPI_SWAGGER_UI_URL="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/",
        API_SPEC_OPTIONS={
            "info": {"description": description or title},
            "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
            "security": [{"bearer": []}],
        },
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        JSON_SORT_KEYS=False,
    )
    app.json = JSONProvider(app)
    app.extensions["coproduction"] = ServiceContext(name, settings, db, metadata, tables or {})
    api = Api(app)
    for bp in blueprints:
        api.register_blueprint(bp)

    @app.before_request
    def _start():
        g.started = time.perf_counter()
        limit = app.config["MAX_CONTENT_LENGTH"]
        if request.content_length is not None and request.content_length > limit:
            raise _too_large(limit, request.content_length)
        if request.content_length is None and request.method in ("POST", "PUT", "PATCH"):
            # A chunked body has no Content-Length: werkzeug stops reading at the limit and
            # would hand over a silently truncated body, so read it here and refuse it whole.
            if len(request.get_data(cache=True)) >= limit:
                raise _too_large(limit, None)
        if request.is_json and json_too_deep(request.get_data(cache=True)):
            raise Problem(400, "Bad Request", f"The JSON body is malformed or nested more than "
                          f"{MAX_JSON_DEPTH} levels deep.")
        _refuse_unstorable()
        incoming = request.headers.get("traceparent", "")
        if TRACEPARENT.match(incoming):
            g.traceparent = incoming

    @app.after_request
    def _finish(resp: Response):
        elapsed = time.perf_counter() - g.get("started", time.perf_counter())
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        metrics.REQUEST_LATENCY.labels(name, request.method, endpoint, resp.status_code).observe(elapsed)
        resp.headers.setdefault("traceparent", traceparent())
        return resp

    @app.errorhandler(Exception)
    def _unexpected(exc):
        if isinstance(exc, HTTPException):
            return api.handle_http_exception(exc)
        if isinstance(exc, DB_UNAVAILABLE):
            log.warning("database unavailable: %s", exc)
            return problem_response(503, "Service Unavailable", "The database is unavailable; retry shortly.",
                                    headers={"Retry-After": "2"})
        log.exception("unhandled error")
        return problem_response(500, "Internal Server Error", "An unexpected error; it has been logged.")

    @app.get("/healthz")
    def healthz():
        return jsonify(status="ok", service=name)

    @app.get("/readyz")
    def readyz():
        checks = {}
        try:
            db.ping()
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"unavailable: {type(exc).__name__}"
        ok = all(v == "ok" for v in checks.values())
        resp = jsonify(status="ok" if ok else "unavailable", checks=checks)
        resp.status_code = 200 if ok else 503
        return resp

    @app.get("/metrics")
    def metrics_endpoint():
        return Response(generate_latest(), mimetype=CONTENT_TYPE_LATEST)

    return app


def create_service_app(spec, settings: Settings | None, *, metadata, blueprints: list, tables: dict) -> Flask:
    """A domain service's app, as every service builds it from its ``PartSpec``: the kernel's app
    with the service's database and tables, its routes and its event feed (``GET /v1/events``)."""
    from .feed import feed_blueprint  # the feed's routes use this module
    settings = settings or Settings.from_env(spec.name)
    return create_app(spec.name, f"coproduction {spec.name}", settings=settings, db=spec.database(settings),
                      metadata=metadata, blueprints=[*blueprints, feed_blueprint()], tables=tables,
                      description=spec.description)


# -- optimistic concurrency ---------------------------------------------------------------
def with_etag(payload: dict, status: int = 200, headers: dict | None = None) -> Response:
    resp = jsonify(payload)
    resp.status_code = status
    resp.headers["ETag"] = f'"{payload["version"]}"'
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp



def check_if_match(current_version: int) -> None:
    """428 without If-Match, 412 when it names another version."""
    header = request.headers.get("If-Match")
    if not header:
        raise Problem(428, "Precondition Required",
                      "Send If-Match with the ETag you last read, so no one's change is overwritten.")
    if header.strip() == "*":
        return
    wanted = {tag.strip().removeprefix("W/").strip('"') for tag in header.split(",")}
    if str(current_version) not in wanted:
        raise Problem(412, "Precondition Failed",
                      f"The resource is at version {current_version}; read it again and retry.",
                      headers={"ETag": f'"{current_version}"'})


def load_or_404(session, model, resource_id: str, noun: str, for_update: bool = False):
    """The row of ``model`` with this id (locked for update if asked), or a 404 naming the noun."""
    import uuid
    from sqlalchemy import select
    try:
        uuid.UUID(resource_id)
    except ValueError:
        raise Problem(404, "Not Found", f"No such {noun}.") from None
    stmt = select(model).where(model.id == resource_id)
    if for_update:
        stmt = stmt.with_for_update()
    row = session.execute(stmt).scalar_one_or_none()
    if row is None:
        raise Problem(404, "Not Found", f"No such {noun}.")
    return row
