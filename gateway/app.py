"""The gateway: the one public door. ``create_app`` wires authentication, the rate limit, the access
decision, the routes and the audit, in the order every request meets them."""
from __future__ import annotations

from coproduction.config import Settings
from coproduction.db import Database
from coproduction.http import create_app as kernel_app

from . import admission, api, changes, consent, discovery, fhir, oauth, pages
from .audit import keys as audit_keys, routes as audit_api
from .fhir import export as fhir_export
from . import policy, relationships, routing, security
from .client_keys import RemoteKeySets
from .limits import init_limits
from .models import metadata
from .tokens import TokenAuthority
from .webhooks import api as subscriptions


def database(settings: Settings) -> Database:
    return Database(settings.database_url, settings.db_schema, pool_size=10, pre_ping=settings.db_pre_ping)


def create_app(settings: Settings | None = None):
    settings = settings or Settings.from_env("gateway")
    audit_keys.public_key()  # no tree-head routes without the audit log's key (ConfigurationError)
    db = database(settings)
    app = kernel_app("gateway", "coproduction gateway", settings=settings, db=db, metadata=metadata,
                     blueprints=[api.bp, audit_api.bp, consent.bp, relationships.bp, relationships.review_bp,
                                 admission.bp, subscriptions.bp, changes.bp, fhir_export.bp],
                     description="The one door to a person's portfolio")
    app.register_blueprint(routing.bp)
    app.extensions["every_bad_field"] = routing.every_bad_field
    app.extensions["oauth"] = TokenAuthority(settings)  # the access tokens it issues and accepts
    app.extensions["oauth_remote_keys"] = RemoteKeySets(settings.allow_loopback_jwks_uri)
    app.register_blueprint(oauth.bp)
    app.register_blueprint(discovery.bp)
    pages.init_app(app)  # web pages, their session cookie, and the JSON site report
    fhir.init_app(app)   # the FHIR R4 server at /fhir/R4; its errors as OperationOutcomes
    init_limits(app, settings)
    app.before_request(security.authenticate)  # who, counted against their rate limit
    app.before_request(policy.enforce)         # may they, for this person, before anything is touched
    app.after_request(policy.scrub)            # no id of a left-out record in an answer about a person
    app.after_request(security.write_audit)
    app.teardown_request(security.close_request_session)
    return app
