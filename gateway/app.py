"""The gateway: the one public door. ``create_app`` wires auth, audit, routing and the read model."""
from __future__ import annotations

from coproduction.config import Settings
from coproduction.db import Database
from coproduction.http import create_app as kernel_app

from . import admission, api, routing, security, subscriptions
from . import changes, fhir
from . import discovery, oauth, pages
from .client_keys import RemoteKeySets
from .limits import init_limits
from .models import metadata
from .tokens import TokenAuthority


def database(settings: Settings) -> Database:
    return Database(settings.database_url, settings.db_schema, pool_size=10, pre_ping=settings.db_pre_ping)


def create_app(settings: Settings | None = None):
    settings = settings or Settings.from_env("gateway")
    db = database(settings)
    app = kernel_app("gateway", "coproduction gateway", settings=settings, db=db, metadata=metadata,
                     blueprints=[api.bp, api.audit_bp, admission.bp,
                                 subscriptions.bp, changes.bp, fhir.bp], description="The one door to a person's portfolio")
    app.register_blueprint(routing.bp)
    app.extensions["oauth"] = TokenAuthority(settings)  # the access tokens it issues and accepts
    app.extensions["oauth_remote_keys"] = RemoteKeySets(settings.allow_loopback_jwks_uri)
    app.register_blueprint(oauth.bp)
    app.register_blueprint(discovery.bp)
    pages.init_app(app)  # web pages, their session cookie, and the JSON site report
    app.before_request(security.authenticate)
    init_limits(app, settings.rate_limit)
    app.after_request(security.write_audit)
    app.teardown_request(security.close_request_session)
    return app
